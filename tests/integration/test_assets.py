"""Assets on moto (S3 + DynamoDB): upload, refusals that leave nothing behind, listing,
delete, and an asset's ops run by the engine."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from chalice.test import Client

from app import app
from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.domain.transitions import ExStatus
from chalicelib.ports import FakeClock
from tests.clients import ADMIN, SignedClient
from tests.conftest import drain, moto_container
from tests.conftest import test_settings as make_settings
from tests.helpers import deliver

ZIP = {"Content-Type": "application/octet-stream"}
MANIFEST = {"name": "mathops", "version": "1.0.0"}
OPS = {
    "readers": {"numbers": "mathops.io:numbers"},
    "processors": {"scale": "mathops.ops:scale", "tag": "mathops.ops:tag"},
}
IO_PY = """
def numbers(params, args):
    for i in range(params.get("count", 3)):
        yield {"n": i}
"""
OPS_PY = """
from .helpers import factor_of


def scale(params, data, ctx):
    return {"n": data["n"], "scaled": data["n"] * factor_of(params), "slice": ctx.order}


def tag(params, data, ctx):
    return {**data, "tag": params["tag"], "args": ctx.args}
"""
HELPERS_PY = """
def factor_of(params):
    return params.get("factor", 1)
"""


def make_zip(
    files: dict[str, Any], *, method: int = zipfile.ZIP_DEFLATED, links: tuple[str, ...] = ()
) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, content in files.items():
            raw = json.dumps(content) if isinstance(content, dict) else content
            info = zipfile.ZipInfo(name)
            info.compress_type = method
            if name in links:
                info.external_attr = 0o120777 << 16
            zf.writestr(info, raw)
    return buf.getvalue()


def ops_bundle(version: str = "1.0.0", folder: str = "") -> bytes:
    return make_zip(
        {
            f"{folder}asset.json": {**MANIFEST, "version": version, "ops": OPS},
            f"{folder}mathops/__init__.py": "",
            f"{folder}mathops/io.py": IO_PY,
            f"{folder}mathops/ops.py": OPS_PY,
            f"{folder}mathops/helpers.py": HELPERS_PY,
            f"{folder}notes.csv": "a,b\n1,2\n",
        }
    )


@pytest.fixture
def env(aws: None, clock: FakeClock, queue: MemoryQueue, tmp_path: Path) -> Iterator[Container]:
    settings = make_settings(
        asset_cache_dir=str(tmp_path / "cache"),
        asset_max_bytes=200_000,
        asset_max_uncompressed=2_000_000,
        asset_max_entries=50,
    )
    yield from moto_container(settings, clock, queue, bucket=True)


@pytest.fixture
def client(env: Container) -> Iterator[Client]:
    with SignedClient(app, ADMIN) as c:
        yield c


def upload(client: Client, data: bytes, path: str = "/v1/assets") -> Any:
    return client.http.post(path, body=data, headers=ZIP)


def bucket_keys(c: Container) -> list[str]:
    s3 = boto3.client("s3", region_name="us-east-1")
    return [o["Key"] for o in s3.list_objects_v2(Bucket=c.settings.bucket).get("Contents", [])]


def table_items(c: Container) -> list[dict[str, Any]]:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    items: list[dict[str, Any]] = ddb.scan(TableName=c.settings.assets_table)["Items"]
    return items


# ---- upload ---------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", ["", "asset/"])
def test_upload_stores_the_zip_under_its_sha1(client: Client, env: Container, folder: str) -> None:
    data = ops_bundle(folder=folder)
    r = upload(client, data)
    assert r.status_code == 201, r.body
    asset_id = hashlib.sha1(data).hexdigest()
    assert r.json_body == {"_id": asset_id}
    assert bucket_keys(env) == [f"assets/{asset_id}.zip"]
    stored = env.files.get(f"assets/{asset_id}.zip")
    assert stored == data
    record = env.assets.get(asset_id)
    assert (record.sha, record.size, record.s3_key) == (
        hashlib.sha256(data).hexdigest(),
        len(data),
        f"assets/{asset_id}.zip",
    )
    assert record.root == folder
    [item] = client.http.get("/v1/assets").json_body
    assert item == {
        "_created": "2027-01-15T08:00:00.000Z",
        "name": "mathops",
        "version": "1.0.0",
        "id": asset_id,
    }


def test_uploading_the_same_zip_twice_is_idempotent(client: Client, env: Container) -> None:
    data = ops_bundle()
    first = upload(client, data)
    again = upload(client, data, path="/assets?blocking=true")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json_body == again.json_body
    assert len(bucket_keys(env)) == 1
    assert len(table_items(env)) == 2  # the asset and its name/version claim
    assert len(client.http.get("/v1/assets").json_body) == 1


def _lying_header() -> bytes:
    data = bytearray(make_zip({"asset.json": MANIFEST, "big.bin": b"\0" * 1_500_000}))
    local = data.find(b"PK\x03\x04", 1)
    struct.pack_into("<I", data, local + 22, 1000)
    central = data.find(b"PK\x01\x02", data.find(b"PK\x01\x02") + 1)
    struct.pack_into("<I", data, central + 24, 1000)
    return bytes(data)


REFUSED: dict[str, tuple[bytes, int, str, str]] = {
    # case: (body, status, field, words in the reason)
    "empty body": (b"", 400, "body", "empty body"),
    "not a zip": (b"this is not a zip file at all", 400, "body", "not a zip"),
    "no asset.json": (make_zip({"op.py": "x = 1"}), 400, "asset.json", "missing"),
    "asset.json two folders deep": (
        make_zip({"a/b/asset.json": MANIFEST}),
        400,
        "asset.json",
        "missing",
    ),
    "asset.json in a folder, other entries outside it": (
        make_zip({"asset/asset.json": MANIFEST, "stray.py": ""}),
        400,
        "asset.json",
        "not every entry",
    ),
    "asset.json not JSON": (make_zip({"asset.json": "{nope"}), 400, "asset.json", "not valid"),
    "asset.json without version": (
        make_zip({"asset.json": {"name": "x"}}),
        400,
        "asset.json.version",
        "required",
    ),
    "asset.json bad name": (
        make_zip({"asset.json": {"name": "a/b", "version": "1"}}),
        400,
        "asset.json.name",
        "pattern",
    ),
    "op target not module:function": (
        make_zip({"asset.json": {**MANIFEST, "ops": {"processors": {"x": "nofunction"}}}}),
        400,
        "asset.json.ops.processors",
        "module:function",
    ),
    "op module not in the zip": (
        make_zip({"asset.json": {**MANIFEST, "ops": {"processors": {"x": "gone:f"}}}}),
        400,
        "asset.json.ops.processors.x",
        "not in the zip",
    ),
    "op shadows a built-in": (
        make_zip({"asset.json": {**MANIFEST, "ops": {"processors": {"noop": "m:f"}}}, "m.py": ""}),
        400,
        "asset.json.ops.processors.noop",
        "built-in",
    ),
    "dot-dot traversal": (
        make_zip({"asset.json": MANIFEST, "../evil.py": "x"}),
        400,
        "body",
        "path traversal",
    ),
    "nested dot-dot traversal": (
        make_zip({"asset.json": MANIFEST, "ops/../../evil.py": "x"}),
        400,
        "body",
        "path traversal",
    ),
    "absolute path": (
        make_zip({"asset.json": MANIFEST, "/etc/cron.d/evil": "x"}),
        400,
        "body",
        "absolute path",
    ),
    "symlink": (
        make_zip({"asset.json": MANIFEST, "link": "/etc/passwd"}, links=("link",)),
        400,
        "body",
        "symbolic link",
    ),
    "over the compressed size limit": (
        make_zip(
            {"asset.json": MANIFEST, "blob.bin": bytes(range(256)) * 1000},
            method=zipfile.ZIP_STORED,
        ),
        413,
        "body",
        "over the limit of 200000",
    ),
    "over the uncompressed limit (headers)": (
        make_zip({"asset.json": MANIFEST, "zeros.bin": b"\0" * 2_500_000}),
        413,
        "body",
        "zip bomb: declared uncompressed size",
    ),
    "compression ratio over the limit": (
        make_zip({"asset.json": MANIFEST, "zeros.bin": b"\0" * 1_500_000}),
        413,
        "body",
        "zip bomb: declared compression ratio",
    ),
    "header lies about the size": (_lying_header(), 400, "body", "corrupt"),
    "too many entries": (
        make_zip({"asset.json": MANIFEST, **{f"f{i}.txt": "x" for i in range(50)}}),
        413,
        "body",
        "51 entries",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_uploads_leave_nothing_behind(client: Client, env: Container, case: str) -> None:
    body, status, field, words = REFUSED[case]
    r = upload(client, body)
    assert r.status_code == status, r.body
    assert set(r.json_body) >= {"error", "message", "errors"}
    [error] = [e for e in r.json_body["errors"] if e["field"] == field] or [None]
    assert error is not None, r.json_body
    assert words in error["reason"], error
    assert bucket_keys(env) == []
    assert table_items(env) == []
    assert client.http.get("/v1/assets").json_body == []


def test_the_same_name_and_version_with_other_content_is_409(
    client: Client, env: Container
) -> None:
    first = upload(client, ops_bundle())
    other = ops_bundle(folder="asset/")  # same asset.json, other bytes
    r = upload(client, other)
    assert r.status_code == 409
    assert r.json_body["errors"][0]["field"] == "asset.json.version"
    assert first.json_body["_id"] in r.json_body["message"]
    assert bucket_keys(env) == [f"assets/{first.json_body['_id']}.zip"]
    assert len(table_items(env)) == 2


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain"])
def test_a_zip_sent_as_text_is_415(client: Client, env: Container, content_type: str) -> None:
    r = client.http.post("/v1/assets", body=ops_bundle(), headers={"Content-Type": content_type})
    assert r.status_code == 415
    assert r.json_body["errors"][0]["field"] == "Content-Type"
    assert "application/octet-stream" in r.json_body["errors"][0]["reason"]
    assert bucket_keys(env) == [] and table_items(env) == []


def test_blocking_must_be_a_boolean(client: Client, env: Container) -> None:
    r = client.http.post("/v1/assets?blocking=maybe", body=ops_bundle(), headers=ZIP)
    assert r.status_code == 400 and r.json_body["errors"][0]["field"] == "blocking"
    assert bucket_keys(env) == []


# ---- listing and look-ups --------------------------------------------------------------------


@pytest.fixture
def three(client: Client, clock: FakeClock) -> list[str]:
    ids = []
    for version in ("1.0.0", "1.1.0", "2.0.0"):
        ids.append(upload(client, ops_bundle(version)).json_body["_id"])
        clock.advance(60)
    return ids


def test_listing_sorts_pages_and_keeps_the_seed_shape(client: Client, three: list[str]) -> None:
    newest = client.http.get("/v1/assets").json_body
    assert [a["id"] for a in newest] == three[::-1]
    assert all(set(a) == {"_created", "name", "version", "id"} for a in newest)
    assert [a["_created"] for a in newest][-1] == "2027-01-15T08:00:00.000Z"
    oldest = client.http.get("/v1/assets?sort=_created:asc").json_body
    assert [a["id"] for a in oldest] == three
    page = client.http.get("/v1/assets?from=1&size=1").json_body
    assert [a["version"] for a in page] == ["1.1.0"]
    assert client.http.get("/v1/assets?from=3").json_body == []
    assert client.http.get("/v1/assets?size=0").json_body == []
    assert client.http.get("/assets?size=2").json_body == newest[:2]  # root route


@pytest.mark.parametrize(
    ("query", "field"),
    [("sort=name:asc", "sort"), ("from=-1", "from"), ("size=ten", "size"), ("size=10001", "size")],
)
def test_bad_listing_options_are_400(
    client: Client, env: Container, query: str, field: str
) -> None:
    r = client.http.get(f"/v1/assets?{query}")
    assert r.status_code == 400 and r.json_body["errors"][0]["field"] == field


def test_get_by_name_and_version(client: Client, three: list[str]) -> None:
    by_name = client.http.get("/v1/assets/mathops").json_body
    assert [a["id"] for a in by_name] == three[::-1]
    [one] = client.http.get("/v1/assets/mathops/1.1.0").json_body
    assert one["id"] == three[1] and one["version"] == "1.1.0"
    assert client.http.get(f"/v1/assets/{three[0]}").json_body[0]["version"] == "1.0.0"
    assert client.http.get("/v1/assets/mathops/9.9.9").json_body == []
    assert client.http.get("/v1/assets/unknown").json_body == []


# ---- delete ---------------------------------------------------------------------------------


def test_delete_removes_the_record_and_the_zip(
    client: Client, env: Container, three: list[str]
) -> None:
    r = client.http.delete(f"/v1/assets/{three[1]}")
    assert r.status_code == 200 and r.json_body == {"_id": three[1]}
    assert [a["id"] for a in client.http.get("/v1/assets").json_body] == [three[2], three[0]]
    assert f"assets/{three[1]}.zip" not in bucket_keys(env)
    # two assets, three name/version claims: the deleted one's is its tombstone
    assert len(bucket_keys(env)) == 2 and len(table_items(env)) == 5
    assert client.http.get("/v1/assets/mathops/1.1.0").json_body == []
    again = client.http.delete(f"/assets/{three[1]}")
    assert again.status_code == 404 and again.json_body["error"] == "not_found"
    assert client.http.delete(f"/v1/assets/{'0' * 40}").status_code == 404
    # the name and version are never free again, whatever the bytes
    for data in (ops_bundle("1.1.0"), ops_bundle("1.1.0", folder="asset/")):
        refused = upload(client, data)
        assert refused.status_code == 409, refused.body
        [error] = refused.json_body["errors"]
        assert error["field"] == "asset.json.version"
        assert f"mathops@1.1.0 was used by deleted asset {three[1]}" in error["reason"]
        assert "never reusable" in error["reason"]
    assert len(bucket_keys(env)) == 2 and len(table_items(env)) == 5


# ---- ops from assets ----------------------------------------------------------------------------


def _submit(client: Client, body: dict[str, Any], start: bool = True) -> Any:
    path = "/v1/jobs?start=true" if start else "/v1/jobs"
    return client.http.post(
        path, body=json.dumps(body), headers={"Content-Type": "application/json"}
    )


def _asset_job(assets: list[str], **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "asset-job",
        "assets": assets,
        "workers": 2,
        "operations": [
            {"_op": "numbers", "count": 3},
            {"_op": "scale", "factor": 10},
            {"_op": "tag", "tag": "t1"},
        ],
    }
    body.update(kw)
    return body


@pytest.mark.parametrize("ref", ["mathops", "mathops:1.0.0", "id"])
def test_a_job_runs_ops_from_an_uploaded_asset(
    client: Client, env: Container, queue: MemoryQueue, tmp_path: Path, ref: str
) -> None:
    data = ops_bundle()
    asset_id = upload(client, data).json_body["_id"]
    r = _submit(client, _asset_job([asset_id if ref == "id" else ref]))
    assert r.status_code == 202, r.body
    drain(env, queue)
    ex = client.http.get(f"/v1/ex/{r.json_body['ex_id']}").json_body
    assert ex["_status"] == "completed", ex
    run = env.store.get_run_by_ex(r.json_body["ex_id"])
    assert run is not None
    results = [s.result for s in env.store.list_slices(run.ex_id)]
    assert results == [
        {"n": i, "scaled": i * 10, "slice": i, "tag": "t1", "args": None} for i in range(3)
    ]
    assert (tmp_path / "cache" / asset_id / "bundle.zip").read_bytes() == data  # cached by id


def test_the_newest_upload_of_a_name_is_used(
    client: Client, env: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    upload(client, ops_bundle("1.0.0"))
    clock.advance(10)
    newer = make_zip(
        {
            "asset.json": {**MANIFEST, "version": "1.1.0", "ops": OPS},
            "mathops/__init__.py": "",
            "mathops/io.py": IO_PY,
            "mathops/helpers.py": HELPERS_PY,
            "mathops/ops.py": OPS_PY.replace('"tag": params["tag"]', '"tag": "v1.1"'),
        }
    )
    upload(client, newer)
    r = _submit(
        client,
        _asset_job(
            ["mathops"], operations=[{"_op": "numbers", "count": 1}, {"_op": "tag", "tag": "x"}]
        ),
    )
    drain(env, queue)
    run = env.store.get_run_by_ex(r.json_body["ex_id"])
    assert run is not None and run.status == ExStatus.completed
    assert run.result == {"n": 0, "tag": "v1.1", "args": None}


def test_a_run_keeps_the_asset_versions_it_started_with(
    client: Client, env: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    first = upload(client, ops_bundle("1.0.0")).json_body["_id"]
    r = _submit(client, _asset_job(["mathops"]))
    [start] = queue.take()
    assert start.kind == "start"
    deliver(env, start)  # sliced: the run is claimed and its slices written
    clock.advance(10)
    newer = make_zip(
        {
            "asset.json": {**MANIFEST, "version": "1.1.0", "ops": OPS},
            "mathops/__init__.py": "",
            "mathops/io.py": IO_PY,
            "mathops/helpers.py": HELPERS_PY,
            "mathops/ops.py": OPS_PY.replace('"tag": params["tag"]', '"tag": "v1.1"'),
        }
    )
    assert upload(client, newer).status_code == 201  # uploaded while the run is going
    drain(env, queue)
    ex = client.http.get(f"/v1/ex/{r.json_body['ex_id']}").json_body
    assert ex["_status"] == "completed" and ex["assets"] == [first]
    tags = [s.result["tag"] for s in env.store.list_slices(ex["ex_id"])]
    assert tags == ["t1", "t1", "t1"]  # every slice ran the version the run started with


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (_asset_job(["nope"]), "assets[0]", "unknown asset 'nope'"),
        (_asset_job([]), "operations[0]._op", "unknown operation 'numbers'"),
        (
            _asset_job(["mathops"], operations=[{"_op": "numbers"}, {"_op": "missing_op"}]),
            "operations[1]._op",
            "unknown operation 'missing_op'",
        ),
        (
            _asset_job(["mathops"], operations=[{"_op": "scale"}]),
            "operations[0]._op",
            "cannot be used as a reader",
        ),
        (
            _asset_job(["mathops"], operations=[{"_op": "noop"}, {"_op": "numbers"}]),
            "operations[1]._op",
            "cannot be used as a processor",
        ),
    ],
)
def test_job_submission_checks_asset_ops(
    client: Client, env: Container, body: dict[str, Any], field: str, words: str
) -> None:
    upload(client, ops_bundle())
    r = _submit(client, body, start=False)
    assert r.status_code == 400, r.body
    [error] = r.json_body["errors"]
    assert error["field"] == field and words in error["reason"]


def test_a_deleted_asset_fails_later_runs_with_the_reason(
    client: Client, env: Container, queue: MemoryQueue
) -> None:
    asset_id = upload(client, ops_bundle()).json_body["_id"]
    job_id = _submit(client, _asset_job(["mathops"]), start=False).json_body["job_id"]
    assert client.http.delete(f"/v1/assets/{asset_id}").status_code == 200
    r = client.http.post(f"/v1/jobs/{job_id}/_start")
    assert r.status_code in (200, 201, 202), r.body
    drain(env, queue)
    [run] = env.store.list_runs(job_id)
    assert run.status == ExStatus.failed
    assert f"unknown asset '{asset_id}'" in run.errors[-1]["error"]  # the job pinned it


def test_a_bundle_altered_in_the_bucket_is_not_loaded(
    client: Client, env: Container, queue: MemoryQueue
) -> None:
    asset_id = upload(client, ops_bundle()).json_body["_id"]
    env.files.put(f"assets/{asset_id}.zip", ops_bundle("6.6.6"), "application/zip")
    r = _submit(client, _asset_job([asset_id]))
    drain(env, queue)
    run = env.store.get_run_by_ex(r.json_body["ex_id"])
    assert run is not None and run.status == ExStatus.failed
    assert "does not match its id" in run.errors[-1]["error"]
