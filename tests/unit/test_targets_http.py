"""The `http` target against a local server, and templates: the request made (method,
URL, query, headers, body, `Idempotency-Key`), retries on 5xx and 429 (`Retry-After`
honoured) within the call's `timeout`, a slow server timed out, the stage's allow-list and
schemes, templates escaped for where they go and refused at submit when unknown."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import trustme
import urllib3

from chalicelib.domain.errors import InvalidInput
from chalicelib.ops import templates
from chalicelib.ops.registry import SliceContext, process, validate_operations
from chalicelib.ops.targets import http as http_target
from chalicelib.ops.targets.base import (
    NotAllowed,
    TargetAccess,
    TargetDenied,
    TargetFailed,
    use,
)
from tests.target_server import TargetServer, target_server

CTX = SliceContext("ex-1", "job-1", 0, 1, "--day 2026-11-28", slot="2026-11-28T23:00:00Z")


def _no_aws(service: str, timeout: float) -> Any:
    raise AssertionError("no AWS client for http")


@pytest.fixture
def server() -> Iterator[TargetServer]:
    use(TargetAccess((("http", "127.0.0.1"),), _no_aws))
    with target_server() as s:
        yield s
    use(None)


def _run(op: dict[str, Any], ctx: SliceContext = CTX) -> Any:
    """The op as a job's only op (its reader, acting on its one slice)."""
    ops = [{"_op": "http", **op}]
    validate_operations(ops)
    return process(ops, {}, ctx)


def test_the_request_made_and_its_result(server: TargetServer) -> None:
    out = _run(
        {
            "method": "POST",
            "url": server.url + "/ok?fixed=1",
            "query": {"slot": "{{ slot }}"},
            "headers": {"X-Run": "{{run_id}}", "Authorization": "Bearer abc"},
            "json": {"job": "{{ job_id }}", "attempt": "{{ attempt }}", "n": [1, "{{ args }}"]},
        }
    )
    assert out["status"] == 200 and out["attempts"] == 1
    assert json.loads(out["body"]) == {"ok": True, "n": 1}
    assert out["request_id"] == "r1" and out["truncated"] is False
    (seen,) = server.seen
    assert seen.method == "POST"
    assert seen.path == "/ok?fixed=1&slot=2026-11-28T23%3A00%3A00Z"
    assert seen.headers["X-Run"] == "ex-1" and seen.headers["Authorization"] == "Bearer abc"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Idempotency-Key"] == CTX.idempotency_key
    assert json.loads(seen.body) == {"job": "job-1", "attempt": "1", "n": [1, "--day 2026-11-28"]}


def test_idempotency_key_is_the_same_across_attempts_and_redeliveries(
    server: TargetServer,
) -> None:
    _run({"url": server.url + "/ok"})
    _run({"url": server.url + "/ok"}, replace(CTX, attempt=2))
    _run({"url": server.url + "/ok"}, replace(CTX, slot="2026-11-29T23:00:00Z"))
    keys = [s.headers["Idempotency-Key"] for s in server.seen]
    assert keys[0] == keys[1] != keys[2]


def test_5xx_retried_within_the_slice(server: TargetServer) -> None:
    out = _run({"url": server.url + "/flaky/2", "retries": 2})
    assert out["status"] == 200 and out["attempts"] == 3
    assert len(server.seen) == 3


def test_5xx_beyond_retries_fails_the_slice(server: TargetServer) -> None:
    with pytest.raises(TargetFailed, match=r"status 503: try later \(after 2 attempts\)"):
        _run({"url": server.url + "/flaky/5", "retries": 1})
    assert len(server.seen) == 2


def test_429_waits_what_retry_after_says(server: TargetServer) -> None:
    out = _run({"url": server.url + "/busy/1", "timeout": 5})
    assert out["attempts"] == 2
    first, second = server.seen
    assert second.at - first.at >= 0.95


def test_retry_after_beyond_the_timeout_is_not_waited(server: TargetServer) -> None:
    began = time.monotonic()
    with pytest.raises(TargetFailed, match="status 429"):
        _run({"url": server.url + "/busy/30", "timeout": 2})
    assert time.monotonic() - began < 1.5
    assert len(server.seen) == 1


def test_a_slow_server_is_timed_out(server: TargetServer) -> None:
    began = time.monotonic()
    with pytest.raises(TargetFailed, match="ReadTimeoutError"):
        _run({"url": server.url + "/slow/3", "timeout": 0.5})
    assert time.monotonic() - began < 2


def test_4xx_is_not_retried_and_expected_codes_succeed(server: TargetServer) -> None:
    with pytest.raises(TargetFailed, match="status 404"):
        _run({"url": server.url + "/status/404"})
    assert len(server.seen) == 1
    assert _run({"url": server.url + "/status/404", "expect": [404]})["status"] == 404


def test_redirects_are_answers_not_followed(server: TargetServer) -> None:
    with pytest.raises(TargetFailed, match="status 302"):
        _run({"url": server.url + "/status/302"})


def test_the_body_kept_is_capped(server: TargetServer) -> None:
    out = _run({"url": server.url + "/big", "max_response_bytes": 100})
    assert out["body"] == "x" * 100 and out["truncated"] is True


def test_a_text_body(server: TargetServer) -> None:
    _run({"method": "PUT", "url": server.url + "/ok", "text": "slot {{ slot }}"})
    assert server.seen[0].body == b"slot 2026-11-28T23:00:00Z"
    assert server.seen[0].headers["Content-Type"].startswith("text/plain")


def test_a_host_outside_the_allow_list_is_refused_before_calling(server: TargetServer) -> None:
    with pytest.raises(TargetDenied, match="'localhost' is not allowed in this stage"):
        _run({"url": server.url.replace("127.0.0.1", "localhost") + "/ok"})
    with pytest.raises(TargetDenied, match="link-local"):
        _run({"url": "http://169.254.169.254/latest/meta-data/"})
    assert server.seen == []


@pytest.mark.parametrize(
    ("op", "field", "words"),
    [
        ({"url": "file:///etc/passwd"}, "operations[0].url", "only http and https"),
        ({"url": "ftp://example.com/x"}, "operations[0].url", "only http and https"),
        ({"url": "http://u:p@example.com/"}, "operations[0].url", "credentials"),
        ({"url": "http://{{ slot }}.example.com/"}, "operations[0].url", "needs a host"),
        ({"url": "https://e.com/{{ nope }}"}, "operations[0].url", "unknown template"),
        ({"url": "https://e.com/", "json": {"a": ["{{ x }}"]}}, "operations[0].json", "a[0]"),
        ({"url": "https://e.com/", "headers": {"X": "{{ __import__ }}"}}, "", "unknown"),
        ({"url": "https://e.com/", "json": 1, "text": "a"}, "operations[0]", "not both"),
        ({"url": "https://e.com/", "expect": [700]}, "operations[0].expect", "status code"),
        ({"url": "https://e.com/", "timeout": 60}, "operations[0].timeout", "at most 50 seconds"),
    ],
)
def test_refused_at_submit_naming_the_field(op: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(InvalidInput) as err:
        validate_operations([{"_op": "http", **op}], max_op_seconds=50)
    assert field in str(err.value) and words in str(err.value)


def test_templates_are_data_escaped_for_their_place() -> None:
    ctx = replace(CTX, args='a"b}} {{ job_id }}\r\nX-Evil: 1&x=/')
    found = templates.values(ctx)
    assert templates.render_url("http://h/p/{{ args }}", found) == (
        "http://h/p/a%22b%7D%7D%20%7B%7B%20job_id%20%7D%7D%0D%0AX-Evil%3A%201%26x%3D%2F"
    )
    body = templates.render_json({"a": "{{args}}", "k{{args}}": 1}, found)
    assert json.loads(json.dumps(body)) == {"a": ctx.args, "k{{args}}": 1}
    with pytest.raises(ValueError, match="line break"):
        templates.render_header("X", "{{ args }}", found)
    assert templates.render_text("{{resolve:ssm:/x}} {{ attempt }}", found) == (
        "{{resolve:ssm:/x}} 1"
    )


def test_check_field_names_the_field_for_other_callers() -> None:
    templates.check_field("operations[1].input", {"ok": "{{ run_id }}"})
    with pytest.raises(InvalidInput) as err:
        templates.check_field("operations[1].input", {"a": ["x", "{{ nope }}"]})
    assert err.value.details["errors"] == [
        {
            "field": "operations[1].input.a[1]",
            "reason": "unknown template {{ nope }}; known: " + ", ".join(templates.NAMES),
        }
    ]


def test_a_key_given_in_any_case_is_not_sent_twice(server: TargetServer) -> None:
    _run({"url": server.url + "/ok", "headers": {"idempotency-key": "mine"}})
    (seen,) = server.seen
    assert [v for k, v in seen.headers.items() if k.lower() == "idempotency-key"] == ["mine"]


class Resolver:
    """Stands for DNS: each name's answers, one per lookup (the last one repeats); every
    lookup (the connection's own of an address too) recorded, by host."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers, self.asked = answers, Counter[str]()
        self.real = socket.getaddrinfo

    def __call__(self, host: str, port: int, *args: Any, **kw: Any) -> list[Any]:
        self.asked[host] += 1
        if host not in self.answers:
            if http_target._address(host) is not None:
                return self.real(host, port, *args, **kw)
            raise socket.gaierror(-2, "Name or service not known")
        got = self.answers[host]
        found = got.pop(0) if len(got) > 1 else got[0]
        return [(2, 1, 6, "", (a, port)) for a in found]


def _resolving(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[list[str]]]) -> Resolver:
    resolver = Resolver(answers)
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    return resolver


def test_a_name_is_resolved_once_and_every_attempt_goes_to_the_checked_address(
    server: TargetServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rebinding: the name answers 127.0.0.1 (named exactly in the list) then the metadata
    address; the call asks once, and its three attempts all reach the server it checked,
    with the name as `Host`."""
    use(TargetAccess((("http", "svc.internal.test"),), _no_aws))
    resolver = _resolving(monkeypatch, {"svc.internal.test": [["127.0.0.1"], ["169.254.169.254"]]})
    port = server.url.rsplit(":", 1)[1]
    out = _run({"url": f"http://svc.internal.test:{port}/flaky/2", "retries": 2})
    assert out["status"] == 200 and out["attempts"] == 3
    assert resolver.asked["svc.internal.test"] == 1  # the connections looked up no name
    assert [s.headers["Host"] for s in server.seen] == [f"svc.internal.test:{port}"] * 3


@pytest.mark.parametrize(
    ("allow", "answer"),
    [
        ("*.internal.test", "127.0.0.1"),  # a pattern does not name a private address
        ("*.internal.test", "10.1.2.3"),
        ("*.internal.test", "fd00::1"),
        ("*.internal.test", "::ffff:192.168.0.1"),
        ("svc.internal.test", "169.254.169.254"),  # link-local: never, even named
        ("svc.internal.test", "fe80::1"),
    ],
)
def test_a_name_resolving_to_a_private_address_is_refused_unless_named_exactly(
    server: TargetServer, monkeypatch: pytest.MonkeyPatch, allow: str, answer: str
) -> None:
    use(TargetAccess((("http", allow),), _no_aws))
    _resolving(monkeypatch, {"svc.internal.test": [["93.184.216.34", answer]]})
    with pytest.raises(NotAllowed, match=r"non-public|link-local") as refused:
        _run({"url": "http://svc.internal.test/ok"})
    assert answer not in str(refused.value)  # where a name points inside is not told
    assert server.seen == []


def test_an_address_named_exactly_is_reached_and_a_public_name_by_pattern(
    server: TargetServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(TargetAccess((("http", "*.example.test"), ("http", "127.0.0.1")), _no_aws))
    assert _run({"url": server.url + "/ok"})["status"] == 200  # 127.0.0.1, named exactly
    _resolving(monkeypatch, {"api.example.test": [["93.184.216.34"]]})
    assert http_target.pin("api.example.test", 443) == "93.184.216.34"
    with pytest.raises(TargetFailed, match="cannot resolve"):
        http_target.resolve("nothing.invalid", 80)


class _Ok(BaseHTTPRequestHandler):
    hosts: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.hosts.append(self.headers.get("Host", ""))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """An https server on 127.0.0.1 whose certificate (of a test CA) names only
    `svc.internal.test`: its port, the CA's file, the TLS server names clients sent."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("svc.internal.test").configure_cert(context)
    names: list[str] = []

    def sent(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        names.append(str(name))

    context.sni_callback = sent
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    try:
        yield httpd.server_address[1], str(ca_file), names
    finally:
        httpd.shutdown()
        httpd.server_close()
        use(None)


def test_https_to_the_pinned_address_keeps_the_name_for_sni_and_the_certificate(
    tls_server: tuple[int, str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection goes to 127.0.0.1, yet the server is asked for `svc.internal.test`
    and its certificate, which names only that, is verified against it."""
    port, ca_file, names = tls_server
    pool = urllib3.PoolManager(num_pools=2, retries=False, ca_certs=ca_file)
    monkeypatch.setattr(http_target, "_POOL", pool)
    use(TargetAccess((("http", "svc.internal.test"),), _no_aws))
    resolver = _resolving(monkeypatch, {"svc.internal.test": [["127.0.0.1"]]})
    _Ok.hosts.clear()
    out = _run({"url": f"https://svc.internal.test:{port}/ok", "retries": 0})
    assert (out["status"], out["body"]) == (200, "ok")
    assert names == ["svc.internal.test"] and resolver.asked["svc.internal.test"] == 1
    assert _Ok.hosts == [f"svc.internal.test:{port}"]
