"""Authentication failures, each with the HTTP status an adapter answers."""

from __future__ import annotations

from shared.errors import SyncError


class AuthFailure(SyncError):
    """Base: the caller may not do this. ``status`` is the HTTP answer."""

    status = 401


class Unauthenticated(AuthFailure):
    """No credentials, or credentials that cannot be verified: 401."""

    status = 401


class Forbidden(AuthFailure):
    """Verified credentials of a caller that is not allowed: 403."""

    status = 403
