"""Bearer tokens and Google-signed identity tokens (against a local issuer)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from shared.auth import (
    Forbidden,
    OidcVerifier,
    Unauthenticated,
    authorize_internal_caller,
    check_bearer,
    verifier_for,
)
from shared.config.settings import load_settings
from tests.helpers.oidc_issuer import OidcIssuer

AUDIENCE = "https://retry-worker-abc.a.run.app"
CALLER = "tasks@proj.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def issuer() -> Iterator[OidcIssuer]:
    server = OidcIssuer()
    yield server
    server.close()


@pytest.fixture
def verifier(issuer: OidcIssuer) -> OidcVerifier:
    return OidcVerifier(
        audience=AUDIENCE, allowed_emails=frozenset({CALLER}), certs_url=issuer.certs_url
    )


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_valid_token_accepted(issuer: OidcIssuer, verifier: OidcVerifier) -> None:
    claims = verifier.verify(_auth(issuer.token(audience=AUDIENCE, email=CALLER)))
    assert claims["email"] == CALLER


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"audience": "https://elsewhere"}, Unauthenticated),
        ({"issuer": "https://evil.example"}, Unauthenticated),
        ({"lifetime": -120}, Unauthenticated),
        ({"email": "someone@else.iam.gserviceaccount.com"}, Forbidden),
        ({"email_verified": False}, Forbidden),
    ],
)
def test_bad_tokens_refused(
    issuer: OidcIssuer, verifier: OidcVerifier, kwargs: dict[str, object], error: type
) -> None:
    claims: dict[str, object] = {"audience": AUDIENCE, "email": CALLER, **kwargs}
    with pytest.raises(error):
        verifier.verify(_auth(issuer.token(**claims)))  # type: ignore[arg-type]


def test_tampered_and_missing_tokens(issuer: OidcIssuer, verifier: OidcVerifier) -> None:
    token = issuer.token(audience=AUDIENCE, email=CALLER)
    head, body, sig = token.split(".")
    with pytest.raises(Unauthenticated):
        verifier.verify(_auth(f"{head}.{body}.{sig[:-4]}AAAA"))
    with pytest.raises(Unauthenticated):
        verifier.verify({})


SECRET_LOOKING = "s3cret-credential-value"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (SECRET_LOOKING, "malformed"),  # google-auth: "Wrong number of segments in token: b'...'"
        (f"{SECRET_LOOKING}.{SECRET_LOOKING}.x", "malformed"),  # "Can't parse segment: b'...'"
        ("e30.WyJzM2NyZXQtY3JlZGVudGlhbC12YWx1ZSJd.x", "malformed"),  # payload is a list
    ],
)
def test_rejections_never_echo_the_presented_token(
    verifier: OidcVerifier, token: str, reason: str
) -> None:
    with pytest.raises(Unauthenticated) as caught:
        verifier.verify(_auth(token))
    assert str(caught.value) == f"identity token rejected: {reason}"


def test_rejections_name_the_reason(issuer: OidcIssuer, verifier: OidcVerifier) -> None:
    expired = issuer.token(audience=AUDIENCE, email=CALLER, lifetime=-120)
    elsewhere = issuer.token(audience="https://elsewhere", email=CALLER)
    head, body, sig = issuer.token(audience=AUDIENCE, email=CALLER).split(".")
    for token, reason in (
        (expired, "expired"),
        (elsewhere, "issued for another audience"),
        (f"{head}.{body}.{sig[:-4]}AAAA", "bad signature"),
    ):
        with pytest.raises(Unauthenticated) as caught:
            verifier.verify(_auth(token))
        assert str(caught.value) == f"identity token rejected: {reason}"
        assert "https://elsewhere" not in str(caught.value)


def test_bearer_constant_time_check() -> None:
    check_bearer({"Authorization": "Bearer s3cret"}, "s3cret")
    with pytest.raises(Unauthenticated):
        check_bearer({}, "s3cret")
    with pytest.raises(Unauthenticated):
        check_bearer({"Authorization": "Basic s3cret"}, "s3cret")
    with pytest.raises(Forbidden):
        check_bearer({"authorization": "Bearer nope"}, "s3cret")


def test_an_empty_allow_list_admits_no_google_identity(
    issuer: OidcIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 21 (6): any Google account can mint a token for our audience; none may pass."""
    settings = load_settings(
        oidc_audience=AUDIENCE, oidc_allowed_emails=" , ", google_certs_url=issuer.certs_url
    )
    with caplog.at_level(logging.ERROR, logger="warp_hubspot_sync.auth"):
        verifier = verifier_for(settings)
        assert verifier is not None and verifier_for(settings) is verifier
        for email in ("anyone@gmail.com", CALLER):
            with pytest.raises(Forbidden):
                verifier.verify(_auth(issuer.token(audience=AUDIENCE, email=email)))
            with pytest.raises(Forbidden):
                authorize_internal_caller(
                    _auth(issuer.token(audience=AUDIENCE, email=email)), settings
                )
    complaints = [r for r in caplog.records if "OIDC_ALLOWED_EMAILS is empty" in r.getMessage()]
    assert len(complaints) == 1
