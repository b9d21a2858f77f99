"""HubSpot-shaped API errors raised inside the emulator and rendered by the server."""

from __future__ import annotations

import uuid
from typing import Any


class ApiError(Exception):
    """An error answer: HTTP status plus HubSpot's JSON error body."""

    def __init__(
        self,
        status: int,
        category: str,
        message: str,
        *,
        context: dict[str, list[str]] | None = None,
        errors: list[dict[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.category = category
        self.message = message
        self.context = context
        self.errors = errors
        self.extra = extra or {}

    def body(self, correlation_id: str) -> dict[str, Any]:
        """The JSON body HubSpot sends for this error."""
        body: dict[str, Any] = {
            "status": "error",
            "message": self.message,
            "correlationId": correlation_id,
        }
        if self.category:
            body["category"] = self.category
        if self.context is not None:
            body["context"] = self.context
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extra)
        return body

    def standard_error(self) -> dict[str, Any]:
        """This error as a ``StandardError`` entry of a 207 batch answer."""
        return {
            "status": "error",
            "category": self.category,
            "message": self.message,
            "context": self.context or {},
            "errors": self.errors or [],
            "links": {},
        }


def new_correlation_id() -> str:
    """A fresh correlation id (HubSpot uses UUIDs)."""
    return str(uuid.uuid4())


def not_found(object_id: str) -> ApiError:
    """HubSpot's 404 for an unknown or non-numeric id (note the two spaces)."""
    return ApiError(
        404,
        "OBJECT_NOT_FOUND",
        "Object not found.  objectId are usually numeric.",
        context={"id": [object_id]},
    )


def validation(message: str, *, errors: list[dict[str, Any]] | None = None) -> ApiError:
    """A 400 VALIDATION_ERROR."""
    return ApiError(400, "VALIDATION_ERROR", message, errors=errors)
