"""AWS Signature Version 4 for the API (service `execute-api`), both ways, by botocore.

`sign` is what every client of the API does (the CLI, the tests, a script): it adds the
`Authorization` and `X-Amz-Date` headers. `verify` is what API Gateway's IAM authorization
does on AWS, done here for the local stack: it recomputes the signature of the request as
received with the secret key of the access key it names, and compares.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from calendar import timegm
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SERVICE = "execute-api"
ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_SECONDS = 15 * 60  # API Gateway's: a signature older (or newer) than this expired
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9;-]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})\s*$"
)


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Credentials,
    region: str,
) -> dict[str, str]:
    """`headers` plus the SigV4 ones for this request (and a session token, if any)."""
    request = AWSRequest(method=method.upper(), url=url, headers=dict(headers), data=body)
    SigV4Auth(credentials, SERVICE, region).add_auth(request)
    return dict(request.headers.items())


class SignatureRejected(Exception):
    """Why a request's signature was refused, in API Gateway's words."""


@dataclass(frozen=True)
class Signed:
    """A verified request's access key id."""

    access_key_id: str


def verify(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    secret_of: Callable[[str], str | None],
    now: Callable[[], float] = time.time,
) -> Signed:
    """Check the request's SigV4 signature (`url`: scheme, the Host it was sent to, the
    path and query as received; `headers` with lowercase names). `secret_of` gives the
    secret key of an access key id (None: unknown). SignatureRejected otherwise."""
    auth = headers.get("authorization")
    if not auth:
        raise SignatureRejected("Missing Authentication Token")
    match = _AUTH.match(auth)
    amz_date = headers.get("x-amz-date", "")
    if match is None or not amz_date:
        raise SignatureRejected(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' "
            "parameters and an 'X-Amz-Date' header"
        )
    secret = secret_of(match["key"])
    if secret is None:
        raise SignatureRejected("The security token included in the request is invalid.")
    _check_time(amz_date, match["date"], now())
    if match["service"] != SERVICE:
        raise SignatureRejected(f"Credential should be scoped to correct service: '{SERVICE}'.")
    declared = headers.get("x-amz-content-sha256")
    if declared not in (None, "UNSIGNED-PAYLOAD", hashlib.sha256(body).hexdigest()):
        raise SignatureRejected("The provided x-amz-content-sha256 does not match the body.")
    names = match["signed"].split(";")
    if "host" not in names:
        raise SignatureRejected("'Host' must be a signed header.")
    signed = {name: headers.get(name, "") for name in names}
    request = AWSRequest(method=method.upper(), url=url, headers=signed, data=body)
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(match["key"], secret), SERVICE, match["region"])
    expected = signer.signature(
        signer.string_to_sign(request, signer.canonical_request(request)), request
    )
    if not hmac.compare_digest(expected, match["signature"]):
        raise SignatureRejected(
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method."
        )
    return Signed(match["key"])


def _check_time(amz_date: str, scope_date: str, now: float) -> None:
    try:
        at = timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    except ValueError as err:
        raise SignatureRejected("X-Amz-Date must be in the form YYYYMMDD'T'HHMMSS'Z'") from err
    if amz_date[:8] != scope_date:
        raise SignatureRejected("Date in Credential scope does not match X-Amz-Date.")
    if abs(now - at) > MAX_SKEW_SECONDS:
        raise SignatureRejected("Signature expired: the request's X-Amz-Date is too far off.")
