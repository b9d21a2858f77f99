"""The receiver's signature check: which URI and headers, v3 window, v1 only when allowed.

HubSpot's own SDK (``hubspot.utils.signature.Signature``) computes every signature
here, so the check is proven against HubSpot's implementation, not our own signer.
The SDK does not URL-decode: it is given the URI HubSpot signs (partially decoded).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from hubspot.utils.signature import Signature
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.config.settings import Settings, load_settings
from shared.inbound import verify
from shared.inbound.verify import SignatureRejected, check_signature, raw_target, signed_uri

SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
PUBLIC = "https://hooks.example.com/hubspot"
BODY = b'[{"eventId":1,"subscriptionId":2,"portalId":3,"occurredAt":4}]'


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"hubspot_client_secret": SECRET, "webhook_public_url": PUBLIC}
    values.update(overrides)
    return load_settings(**values)


def _now() -> int:
    return int(time.time() * 1000)


def _v3(uri: str, body: bytes = BODY, *, timestamp: int | None = None, secret: str = SECRET):
    ts = timestamp if timestamp is not None else _now()
    signature = Signature.get_signature(
        secret, body.decode(), "v3", http_uri=uri, http_method="POST", timestamp=str(ts)
    )
    return {verify.V3_HEADER: signature, verify.TIMESTAMP_HEADER: str(ts)}


def _check(settings: Settings, target: str, headers: dict[str, str], body: bytes = BODY) -> str:
    return check_signature(
        settings,
        method="POST",
        uri=signed_uri(settings, target, "http://10.0.0.7:8080/"),
        headers=headers,
        body=body,
        now_ms=_now(),
    )


def test_v3_over_public_url_path_and_query_passes() -> None:
    target = "/v1/webhooks/hubspot/company?portal=62515&x=1"
    assert _check(_settings(), target, _v3(PUBLIC + target)) == "v3"


def test_v3_signed_over_the_internal_url_is_refused() -> None:
    target = "/v1/webhooks/hubspot/contact"
    with pytest.raises(SignatureRejected) as info:
        _check(_settings(), target, _v3("http://10.0.0.7:8080" + target))
    assert info.value.reason == "bad_signature" and info.value.status == 401


def test_partial_url_decoding_rule() -> None:
    # HubSpot signs with %3A, %40 ... decoded, but %20 kept as sent.
    target = "/hook%3Acompany/a%40b?q=x%2Cy&space=a%20b"
    signed_over = PUBLIC + "/hook:company/a@b?q=x,y&space=a%20b"
    assert _check(_settings(), target, _v3(signed_over)) == "v3"
    with pytest.raises(SignatureRejected):
        _check(_settings(), target, _v3(PUBLIC + "/hook:company/a@b?q=x,y&space=a b"))


def test_stale_timestamp_refused_even_with_a_valid_signature() -> None:
    target = "/v1/webhooks/hubspot/company"
    stale = _now() - 301_000
    with pytest.raises(SignatureRejected) as info:
        _check(_settings(), target, _v3(PUBLIC + target, timestamp=stale))
    assert info.value.reason == "stale"
    recent = _now() - 290_000
    assert _check(_settings(), target, _v3(PUBLIC + target, timestamp=recent)) == "v3"


def test_wrong_secret_tampered_body_and_missing_headers_refused() -> None:
    target = "/v1/webhooks/hubspot/company"
    with pytest.raises(SignatureRejected, match="bad_signature"):
        _check(_settings(), target, _v3(PUBLIC + target, secret="another-secret"))
    with pytest.raises(SignatureRejected, match="bad_signature"):
        _check(_settings(), target, _v3(PUBLIC + target), body=BODY.replace(b"1", b"9", 1))
    headers = _v3(PUBLIC + target)
    del headers[verify.TIMESTAMP_HEADER]
    with pytest.raises(SignatureRejected, match="missing"):
        _check(_settings(), target, headers)
    with pytest.raises(SignatureRejected, match="missing"):
        _check(_settings(), target, {})


def _v1(body: bytes = BODY) -> dict[str, str]:
    signature = Signature.get_signature(SECRET, body.decode(), "v1")
    return {verify.V1_HEADER: signature, verify.VERSION_HEADER: "v1"}


def test_v1_only_when_allowed_and_no_v3_header() -> None:
    target = "/v1/webhooks/hubspot/company"
    with pytest.raises(SignatureRejected, match="missing"):
        _check(_settings(), target, _v1())
    allowed = _settings(webhook_accept_v1=True)
    assert _check(allowed, target, _v1()) == "v1"
    # A v3 header present decides, even when a valid v1 signature rides along.
    forged_v3 = {**_v1(), **_v3(PUBLIC + target, secret="another-secret")}
    with pytest.raises(SignatureRejected, match="v3"):
        _check(allowed, target, forged_v3)
    with pytest.raises(SignatureRejected, match="bad_signature"):
        _check(allowed, target, _v1(b"[]"))
    with pytest.raises(SignatureRejected, match="unsupported"):
        _check(allowed, target, {**_v1(), verify.VERSION_HEADER: "v2"})


def test_documented_v1_vector() -> None:
    body = (
        b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
        b'"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,'
        b'"changeSource":"CRM","changeFlag":"NEW","appId":54321}]'
    )
    headers = {
        verify.V1_HEADER: "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de",
        verify.VERSION_HEADER: "v1",
    }
    assert _check(_settings(webhook_accept_v1=True), "/", headers, body) == "v1"


def test_no_client_secret_refuses_everything() -> None:
    settings = load_settings(webhook_public_url=PUBLIC, hubspot_client_secret=None)
    with pytest.raises(SignatureRejected, match="HUBSPOT_CLIENT_SECRET"):
        _check(settings, "/x", _v3(PUBLIC + "/x"))


def test_without_public_url_the_request_url_is_used_and_warned_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verify, "_warned", type(verify._warned)())
    settings = _settings(webhook_public_url=None)
    with caplog.at_level(logging.WARNING, logger="warp_hubspot_sync.inbound"):
        assert signed_uri(settings, "/a?b=1", "http://127.0.0.1:9000/") == (
            "http://127.0.0.1:9000/a?b=1"
        )
        signed_uri(settings, "/a", "http://127.0.0.1:9000/")
    warnings = [r for r in caplog.records if "WEBHOOK_PUBLIC_URL" in r.getMessage()]
    assert len(warnings) == 1


def test_raw_target_prefers_the_raw_request_line() -> None:
    assert raw_target({"RAW_URI": "/a%3Ab?x=%2C"}, "/a:b", b"x=%2C") == "/a%3Ab?x=%2C"
    assert raw_target({"REQUEST_URI": "/c"}, "/c", b"") == "/c"
    assert raw_target({"RAW_URI": "http://h:1/p?q=1"}, "/p", b"q=1") == "/p?q=1"
    # No raw line: the decoded path is escaped again, the query kept as sent.
    assert raw_target({}, "/a b", b"q=%20") == "/a%20b?q=%20"


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(min_size=0, max_size=300).map(lambda b: b.decode("latin-1").encode()),
    path=st.lists(
        st.text(alphabet="abcxyz019-_.~", min_size=1, max_size=8), min_size=1, max_size=4
    ).map(lambda parts: "/" + "/".join(parts)),
    query=st.one_of(st.just(""), st.text(alphabet="abc=&019", min_size=1, max_size=12)),
)
def test_any_sdk_signed_request_passes_and_any_changed_body_fails(
    body: bytes, path: str, query: str
) -> None:
    settings = _settings()
    target = path + (f"?{query}" if query else "")
    headers = _v3(PUBLIC + target, body)
    assert _check(settings, target, headers, body) == "v3"
    with pytest.raises(SignatureRejected):
        _check(settings, target, headers, body + b" ")
