"""The operator console: one HTML page served by ``sync_api`` at ``GET /v1/sync/console``.

The page is static (no data in it): it asks for the API's bearer token, keeps it in the
tab's ``sessionStorage`` and does everything through the management API's own routes,
so it can show or change nothing the API would not. Its style sheet and script are
inlined into the page when first served and allowed by their SHA-256 hashes in the
Content-Security-Policy: one route, no file server, and no other script or style runs
on the page (``'unsafe-inline'`` is never needed).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

HERE = Path(__file__).parent
STYLE_MARK = "/* console.css */"
SCRIPT_MARK = "/* console.js */"


@dataclass(frozen=True)
class Page:
    """The assembled page and the headers it is served with."""

    html: str
    headers: dict[str, str]


def _hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def assemble(template: str, style: str, script: str) -> Page:
    """The page with ``style`` and ``script`` inlined, and its security headers."""
    if template.count(STYLE_MARK) != 1 or template.count(SCRIPT_MARK) != 1:
        raise ValueError("the console template must hold each mark once")
    html = template.replace(STYLE_MARK, style).replace(SCRIPT_MARK, script)
    policy = "; ".join(
        (
            "default-src 'none'",
            f"script-src {_hash(script)}",
            f"style-src {_hash(style)}",
            # The API is on the page's own origin; nothing else is fetched.
            "connect-src 'self'",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )
    headers = {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
        # The page holds no data, but a shared cache must never keep a variant of it.
        "Cache-Control": "no-store",
    }
    return Page(html, headers)


@cache
def page() -> Page:
    """The console page (read and assembled once per instance)."""
    return assemble(
        (HERE / "index.html").read_text(encoding="utf-8"),
        (HERE / "console.css").read_text(encoding="utf-8"),
        (HERE / "console.js").read_text(encoding="utf-8"),
    )
