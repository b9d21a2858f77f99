"""The OpenAPI 3.1 document of the management API, generated from the route table.

The document is committed (``shared/api/openapi.json``) and served as it is;
``python -m shared.api.openapi`` rewrites it after a route or model changes, and a
test fails while the committed file and :func:`build_document` differ.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.api.auth import USER_MAX_LENGTH, USER_PATTERN
from shared.api.models import CUSTOMER_REF_DESCRIPTION, CUSTOMER_REF_PATTERN
from shared.api.routes import DOCUMENT_PATH, ROUTES, Route

REF = "#/components/schemas/{model}"
TITLE = "WARP ⇄ HubSpot sync management API"
VERSION = "1.0.0"


def _models(routes: tuple[Route, ...]) -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    for route in routes:
        for model in (route.body, *(m for m, _ in route.responses.values())):
            if model is not None:
                found[model.__name__] = model
    return [found[name] for name in sorted(found)]


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema without pydantic's ``null`` branch (absent is not null)."""
    options = [o for o in schema.pop("anyOf", []) if o != {"type": "null"}]
    if len(options) == 1:
        schema.update(options[0])
    elif options:
        schema["anyOf"] = options
    if schema.get("default", 0) is None:
        del schema["default"]
    return schema


def _parameters(route: Route) -> list[dict[str, Any]]:
    id_schema: dict[str, Any] = {"type": "string", "format": "uuid"}
    if route.takes_customer:
        id_schema = {"type": "string", "pattern": CUSTOMER_REF_PATTERN}
    params: list[dict[str, Any]] = [
        {
            "name": segment[1:-1],
            "in": "path",
            "required": True,
            **({"description": CUSTOMER_REF_DESCRIPTION} if route.takes_customer else {}),
            "schema": id_schema,
        }
        for segment in route.segments
        if segment.startswith("{")
    ]
    if route.query is not None:
        schema = route.query.model_json_schema(ref_template=REF)
        for name, prop in schema.get("properties", {}).items():
            prop = _without_null(dict(prop))
            description = prop.pop("description", None)
            prop.pop("title", None)
            entry: dict[str, Any] = {"name": name, "in": "query", "required": False}
            if description:
                entry["description"] = description
            entry["schema"] = prop
            params.append(entry)
    if route.auth == "api":
        params.append(
            {
                "name": "X-Triggered-By-User",
                "in": "header",
                "required": False,
                "description": "who the change is made for (sync log triggered_by_user); "
                "default: the identity token's email",
                "schema": {
                    "type": "string",
                    "maxLength": USER_MAX_LENGTH,
                    "pattern": f"^ *{USER_PATTERN.pattern} *$",
                },
            }
        )
    return params


_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "api": [{"apiToken": []}, {"googleIdToken": []}],
    "metrics": [{"metricsToken": []}, {}],
    "page": [],  # the page is open; the calls it makes carry the API's credentials
}


def _operation(route: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
        "security": _SECURITY[route.auth],
    }
    params = _parameters(route)
    if params:
        operation["parameters"] = params
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": REF.format(model=route.body.__name__)}}
            },
        }
    responses: dict[str, Any] = {}
    for status, (model, description) in route.responses.items():
        answer: dict[str, Any] = {"description": description}
        if model is not None:
            answer["content"] = {
                "application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}
            }
        elif status == 200:
            is_json = route.media_type == "application/json"
            schema = {"type": "object"} if is_json else {"type": "string"}
            answer["content"] = {route.media_type: {"schema": schema}}
        responses[str(status)] = answer
    operation["responses"] = responses
    return operation


def build_document(routes: tuple[Route, ...] = ROUTES) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``routes``."""
    models = _models(routes)
    _, schema = models_json_schema(
        [(m, "serialization") for m in models]
        + [(r.body, "validation") for r in routes if r.body is not None],
        ref_template=REF,
    )
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": "Trigger syncs, read status, logs and conflicts, resolve conflicts, "
            "run reconciliations, replay failed work, see the whole fleet and the change "
            "feed, pause and resume. A customer is named by its UUID or by `ban:<BAN>` "
            "wherever a customer id is taken. JSON in and out; errors are "
            '`{"error": ..., "field": ...}`.',
        },
        "paths": paths,
        "components": {
            "schemas": schema.get("$defs", {}),
            "securitySchemes": {
                "apiToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "SYNC_API_TOKEN",
                },
                "googleIdToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "a Google-signed identity token for OIDC_AUDIENCE from an "
                    "OIDC_ALLOWED_EMAILS account",
                },
                "metricsToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "METRICS_TOKEN (when set)",
                },
            },
        },
    }


def render_document(routes: tuple[Route, ...] = ROUTES) -> str:
    """The document as the committed file holds it (stable key order, trailing newline)."""
    return json.dumps(build_document(routes), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    """Rewrite the committed document from the route table."""
    DOCUMENT_PATH.write_text(render_document(), encoding="utf-8")
    print(f"wrote {DOCUMENT_PATH}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
