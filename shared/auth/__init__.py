"""Who may call a function: Google-signed OIDC tokens and bearer tokens.

The verifier raises :class:`Unauthenticated` (answer 401: no or unreadable
credentials) or :class:`Forbidden` (answer 403: valid credentials of the wrong
caller). Adapters map them to responses; the engine never sees either.
"""

from shared.auth.bearer import bearer_token, check_bearer
from shared.auth.errors import AuthFailure, Forbidden, Unauthenticated
from shared.auth.oidc import GOOGLE_CERTS_URL, OidcVerifier, authorize_internal_caller, verifier_for

__all__ = [
    "GOOGLE_CERTS_URL",
    "AuthFailure",
    "Forbidden",
    "OidcVerifier",
    "Unauthenticated",
    "authorize_internal_caller",
    "bearer_token",
    "check_bearer",
    "verifier_for",
]
