import pytest

from hub.fanout.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, sign, signature, verify

SECRET = b"khoa-bi-mat-cua-vneid"
BODY = '{"citizen_id":"c-1","name":"Nguyễn Thị Hồng"}'.encode()


def test_signed_body_verifies():
    headers = sign(SECRET, BODY, now=1_700_000_000)
    verify(SECRET, BODY, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], now=1_700_000_010)


def test_signature_is_hmac_sha256_over_timestamp_dot_body():
    import hashlib
    import hmac

    expected = hmac.new(SECRET, b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert signature(SECRET, 1_700_000_000, BODY) == "sha256=" + expected


@pytest.mark.parametrize("body, secret, ts, reason", [
    (BODY + b" ", SECRET, 1_700_000_000, "does not match"),
    (BODY, b"khoa-khac", 1_700_000_000, "does not match"),
    (BODY, SECRET, 1_699_999_000, "window"),
])
def test_tampered_wrong_key_or_stale_is_refused(body, secret, ts, reason):
    headers = sign(secret, BODY, now=ts)
    with pytest.raises(SignatureError, match=reason):
        verify(SECRET, body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], now=1_700_000_000)


@pytest.mark.parametrize("ts, sig", [(None, "sha256=00"), ("1700000000", None), ("hôm-nay", "sha256=00")])
def test_missing_or_malformed_headers_are_refused(ts, sig):
    with pytest.raises(SignatureError):
        verify(SECRET, BODY, ts, sig, now=1_700_000_000)
