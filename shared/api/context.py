"""What a route handler receives and how it refuses: :class:`Call` and :class:`ApiError`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import flask
from pydantic import BaseModel

from shared.api.auth import Caller
from shared.engine import Engine

# A handler answers a status and a model, or a ready response (metrics, the document).
Reply = tuple[int, BaseModel] | flask.Response


@dataclass(frozen=True)
class Call:
    """One authenticated request, its inputs already validated."""

    engine: Engine
    caller: Caller
    user: str | None  # triggered_by_user: X-Triggered-By-User, else the OIDC email
    path: dict[str, str]  # path parameters (UUIDs in canonical form)
    query: Any = None  # the route's query model instance, if it has one
    body: Any = None  # the route's body model instance, if it has one


class ApiError(Exception):
    """An answer other than success: ``status``, a message, the input ``field`` at fault."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        retryable: bool | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.retryable = retryable
        self.headers = headers or {}
