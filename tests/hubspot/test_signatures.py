"""HubSpot signatures: the documented vectors, and the official SDK as an independent oracle."""

from __future__ import annotations

import time

import pytest
from hubspot.utils.signature import Signature
from hypothesis import given
from hypothesis import strategies as st

from shared.hubspot.signatures import (
    VerifyReason,
    normalize_v3_uri,
    sign_v1,
    sign_v3,
    verify_v1,
    verify_v3,
)

SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
V1_BODY = (
    b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
    b'"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,'
    b'"changeSource":"CRM","changeFlag":"NEW","appId":54321}]'
)
V3_URI = "https://www.example.com/webhook_uri"
V3_BODY = b"{'example_field':'example_value'}"
V3_TS = 1693657560000

secrets = st.text(min_size=1, max_size=40)
bodies = st.binary(max_size=300).map(lambda b: b.decode("latin-1").encode("utf-8"))
ESCAPES = ["%20", "%2F", "%3a", "%3F", "%40", "%25", "%2C"]
path_chars = st.sampled_from([*"abcXYZ019-_.~/", *ESCAPES])
uris = st.lists(path_chars, max_size=20).map(lambda parts: "https://h.example/" + "".join(parts))


def test_v1_documented_vector() -> None:
    expected = "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
    assert sign_v1(SECRET, V1_BODY) == expected


def test_v3_documented_vector() -> None:
    expected = "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y="
    assert sign_v3(SECRET, "POST", V3_URI, V3_BODY, V3_TS) == expected


def test_normalize_decodes_only_the_listed_escapes() -> None:
    uri = "https://h/p%3a%2F%3F%40%21%24%27%28%29%2A%2C%3b?q=a%20b%25c&r=%2f"
    assert normalize_v3_uri(uri) == "https://h/p:/?@!$'()*,;?q=a%20b%25c&r=/"


def test_normalize_keeps_the_query_question_mark_and_other_escapes() -> None:
    assert normalize_v3_uri("https://h/x?a=%7E&b=%2525") == "https://h/x?a=%7E&b=%2525"


@given(secret=secrets, body=bodies)
def test_v1_matches_the_sdk(secret: str, body: bytes) -> None:
    text = body.decode("utf-8")
    assert sign_v1(secret, body) == Signature.get_signature(secret, text, "v1")
    assert verify_v1(secret, body, Signature.get_signature(secret, text, "v1")).ok


methods = st.sampled_from(["POST", "GET"])


@given(secret=secrets, body=bodies, uri=uris, ts=st.integers(0, 2**45), method=methods)
def test_v3_matches_the_sdk_on_the_decoded_uri(
    secret: str, body: bytes, uri: str, ts: int, method: str
) -> None:
    # The SDK does not decode the URI; HubSpot signs the decoded form, so the SDK gets it decoded.
    decoded = normalize_v3_uri(uri)
    expected = Signature.get_signature(secret, body.decode(), "v3", decoded, method, str(ts))
    assert sign_v3(secret, method, uri, body, ts) == expected


@given(secret=secrets, body=bodies, uri=uris)
def test_sdk_and_we_accept_each_others_signatures(secret: str, body: bytes, uri: str) -> None:
    now = int(time.time() * 1000)
    ours = sign_v3(secret, "POST", uri, body, now)
    decoded, text = normalize_v3_uri(uri), body.decode()
    assert Signature.is_valid(ours, secret, text, decoded, "POST", "v3", str(now))
    theirs = Signature.get_signature(secret, text, "v3", decoded, "POST", str(now))
    assert verify_v3(secret, "POST", uri, body, theirs, now, now).ok


@given(body=bodies, flip=st.integers(0, 43))
def test_any_altered_signature_is_rejected(body: bytes, flip: int) -> None:
    good = sign_v3(SECRET, "POST", V3_URI, body, V3_TS)
    bad = good[:flip] + ("A" if good[flip] != "A" else "B") + good[flip + 1 :]
    result = verify_v3(SECRET, "POST", V3_URI, body, bad, V3_TS, V3_TS)
    assert result.reason is VerifyReason.BAD_SIGNATURE and not result


def test_v3_reasons() -> None:
    sig = sign_v3(SECRET, "POST", V3_URI, V3_BODY, V3_TS)

    def check(signature: str | None, ts: int | None, now: int) -> VerifyReason:
        return verify_v3(SECRET, "POST", V3_URI, V3_BODY, signature, ts, now).reason

    assert check(sig, V3_TS, V3_TS + 299_999) is VerifyReason.OK
    assert check(sig, V3_TS, V3_TS + 300_001) is VerifyReason.STALE
    assert check(sig, V3_TS, V3_TS - 59_000) is VerifyReason.OK  # small clock skew
    assert check(sig, V3_TS, V3_TS - 61_000) is VerifyReason.FUTURE
    assert check(None, V3_TS, V3_TS) is VerifyReason.MISSING
    assert check(sig, None, V3_TS) is VerifyReason.MISSING
    assert check(sig + "x", V3_TS, V3_TS) is VerifyReason.BAD_SIGNATURE
    garbled = verify_v3(SECRET, "POST", V3_URI, V3_BODY, sig, "not-a-number", V3_TS)
    assert garbled.reason is VerifyReason.MISSING
    assert verify_v3(SECRET, "POST", V3_URI, V3_BODY, sig, str(V3_TS), V3_TS).ok


def test_v3_signature_covers_the_uri_with_decoding() -> None:
    sig = sign_v3(SECRET, "POST", "https://h/hook?x=a%3Ab", V3_BODY, V3_TS)
    assert verify_v3(SECRET, "POST", "https://h/hook?x=a:b", V3_BODY, sig, V3_TS, V3_TS).ok
    assert not verify_v3(SECRET, "POST", "https://h/other?x=a:b", V3_BODY, sig, V3_TS, V3_TS).ok


@pytest.mark.parametrize("signature", [None, "", "00" * 32])
def test_v1_rejects_missing_or_wrong(signature: str | None) -> None:
    assert not verify_v1(SECRET, V1_BODY, signature).ok
