"""SigV4 both ways (cadenza_tools.sigv4): what botocore signs verifies; any change to what
was signed, another key, or a stale date is refused with API Gateway's words."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from botocore.credentials import Credentials

from cadenza_tools.sigv4 import SignatureRejected, sign, verify

KEY, SECRET = "AKIALOCALTEST0000001", "s3cr3t" * 6
URL = "http://127.0.0.1:5678/v1/jobs?start=true&b=2"
BODY = b'{"name": "j"}'
Change = Callable[[dict[str, str]], tuple[str, str, dict[str, str], bytes]]


def _secret(key: str) -> str | None:
    return SECRET if key == KEY else None


def _signed(url: str = URL, body: bytes = BODY, secret: str = SECRET) -> dict[str, str]:
    headers = sign(
        "POST",
        url,
        {"Content-Type": "application/json"},
        body,
        Credentials(KEY, secret),
        "us-east-1",
    )
    return {k.lower(): v for k, v in headers.items()} | {"host": "127.0.0.1:5678"}


def test_a_signed_request_verifies() -> None:
    assert verify("POST", URL, _signed(), BODY, _secret).access_key_id == KEY


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda h: ("POST", URL, h, b'{"name": "k"}'), "does not match"),
        (lambda h: ("POST", URL.replace("jobs", "ex"), h, BODY), "does not match"),
        (lambda h: ("POST", URL.replace("true", "false"), h, BODY), "does not match"),
        (lambda h: ("PUT", URL, h, BODY), "does not match"),
        (lambda h: ("POST", URL, {**h, "content-type": "text/plain"}, BODY), "does not match"),
        (
            lambda h: ("POST", URL, {k: v for k, v in h.items() if k != "authorization"}, BODY),
            "Missing Authentication Token",
        ),
    ],
)
def test_any_change_to_what_was_signed_is_refused(change: Change, reason: str) -> None:
    method, url, headers, body = change(_signed())
    with pytest.raises(SignatureRejected, match=reason):
        verify(method, url, headers, body, _secret)


def test_another_secret_an_unknown_key_and_a_stale_date_are_refused() -> None:
    with pytest.raises(SignatureRejected, match="does not match"):
        verify("POST", URL, _signed(secret="wrong" * 8), BODY, _secret)
    with pytest.raises(SignatureRejected, match="security token"):
        verify("POST", URL, _signed(), BODY, lambda key: None)
    later = time.time() + 16 * 60
    with pytest.raises(SignatureRejected, match="expired"):
        verify("POST", URL, _signed(), BODY, _secret, now=lambda: later)
