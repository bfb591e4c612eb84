"""Hostile assets (issue #10): each attack an uploaded asset made on the worker, tried again
by an asset zip run by the engine, and what the asset saw of it. Asset ops run in a child
process (`chalicelib.ops.sandbox`); the worker here is one warm container over moto."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client

from app import app
from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.config import Limits
from chalicelib.domain.runs import Run
from chalicelib.domain.transitions import ExStatus
from chalicelib.ports import FakeClock
from tests.clients import ADMIN, OTHER, OWNER, SignedClient
from tests.conftest import drain, moto_container
from tests.conftest import test_settings as make_settings
from tests.integration.test_assets import MANIFEST, OPS, make_zip, ops_bundle, upload

JSON = {"Content-Type": "application/json"}
SECRET = "sentinel-secret-of-the-worker"
PASSWORD = "--db-password=hunter2"
HOSTILE_PY = """
import base64, dataclasses, json, os, site, subprocess, sys, time

site.main()  # the worker's packages, which a child does not import by itself


def _attempt(fn):
    try:
        return {"ok": repr(fn())}
    except BaseException as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def _proc_environ():
    with open(f"/proc/{os.getppid()}/environ", "rb") as fh:
        return fh.read().decode(errors="replace")


def _credentials():
    import boto3
    return boto3.Session().get_credentials()


def spy(params, data, ctx):
    return {
        "env": dict(os.environ),
        "parent_environ": _attempt(_proc_environ),
        "credentials": _attempt(_credentials),
        "files": repr(getattr(ctx, "files", None)),
        "cwd": os.getcwd(),
    }


def _scan(table):
    import boto3
    return boto3.client("dynamodb", region_name="us-east-1").scan(TableName=table)


def _through_the_store(ex_id):
    from chalicelib.bootstrap import build_container
    run = build_container().store.get_run_by_ex(ex_id)
    return None if run is None else run.args


def store(params, data, ctx):
    return {
        "scan": _attempt(lambda: _scan(params["table"])),
        "store": _attempt(lambda: _through_the_store(params["ex_id"])),
    }


def patch_echo(params, data, ctx):
    import chalicelib.ops.registry as registry
    echo = registry.REGISTRY["echo"]
    registry.REGISTRY["echo"] = dataclasses.replace(echo, processor=lambda p, d, c: "pwned")
    return {"patched": registry.REGISTRY["echo"].processor(None, None, None)}


def poison(params, data, ctx):
    folder = os.path.join(params["cache"], params["victim"])
    os.makedirs(folder, exist_ok=True)
    zipped = base64.b64decode(params["zip"])
    for name in ("bundle.zip", ".complete"):
        with open(os.path.join(folder, name), "wb") as fh:
            fh.write(zipped)
    return {"written": sorted(os.listdir(folder))}


def linger(params, data, ctx):
    child = subprocess.Popen(["sleep", "300"])
    return {"pid": child.pid}


def slow(params, data, ctx):
    time.sleep(params["seconds"])
    return data


def loud(params, data, ctx):
    return "x" * params["size"]
"""
HOSTILE_OPS = {
    name: f"hostile:{name}" for name in ("spy", "store", "patch_echo", "poison", "linger", "slow")
} | {"loud": "hostile:loud"}


def hostile_bundle() -> bytes:
    return make_zip(
        {
            "asset.json": {
                "name": "hostile",
                "version": "1.0.0",
                "ops": {"processors": HOSTILE_OPS},
            },
            "hostile.py": HOSTILE_PY,
        }
    )


def evil_twin(victim_version: str = "1.0.0") -> bytes:
    """A bundle with the victim's asset.json whose `tag` says it was swapped."""
    return make_zip(
        {
            "asset.json": {**MANIFEST, "version": victim_version, "ops": OPS},
            "mathops/__init__.py": "",
            "mathops/io.py": "def numbers(params, args):\n    yield {'n': 0}\n",
            "mathops/helpers.py": "",
            "mathops/ops.py": "def scale(p, d, c):\n    return d\n\n"
            "def tag(p, d, c):\n    return {'tag': 'pwned'}\n",
        }
    )


@pytest.fixture
def env(
    aws: None,
    clock: FakeClock,
    queue: MemoryQueue,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Container]:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("CADENZA_JOBS_TABLE", "secret-jobs-table")
    settings = make_settings(
        asset_cache_dir=str(tmp_path / "cache"),
        asset_max_output=100_000,
        limits=Limits(max_op_seconds=8),
    )
    yield from moto_container(settings, clock, queue, bucket=True)


@pytest.fixture
def admin(env: Container) -> Iterator[Client]:
    with SignedClient(app, ADMIN) as c:
        yield c


@pytest.fixture
def hostile(admin: Client) -> str:
    r = upload(admin, hostile_bundle())
    assert r.status_code == 201, r.body
    return str(r.json_body["_id"])


def run_op(
    env: Container, queue: MemoryQueue, user: Any, op: dict[str, Any], assets: list[str]
) -> Run:
    """A one-slice job of `user` running `op` after the noop reader, once (no retry); its
    finished run."""
    body = {
        "name": "attack",
        "assets": assets,
        "operations": [{"_op": "noop"}, op],
        "max_retries": 0,
    }
    with SignedClient(app, user) as c:
        r = c.http.post("/v1/jobs?start=true", body=json.dumps(body), headers=JSON)
    assert r.status_code == 202, r.body
    drain(env, queue)
    run = env.store.get_run_by_ex(r.json_body["ex_id"])
    assert run is not None
    return run


def test_an_asset_sees_no_credentials_and_no_configuration(
    env: Container, queue: MemoryQueue, hostile: str
) -> None:
    run = run_op(env, queue, OTHER, {"_op": "spy"}, [hostile])
    assert run.status == ExStatus.completed, run.errors
    seen = run.result
    assert SECRET not in json.dumps(seen) and "secret-jobs-table" not in json.dumps(seen)
    names = set(seen["env"])
    assert not {n for n in names if n.startswith("CADENZA_")}
    assert not names & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
    assert not {n for n in names if n.startswith("AWS_CONTAINER_")}
    assert not {n for n in names if "ENDPOINT" in n or n.startswith("AWS_LAMBDA")}
    assert seen["env"]["AWS_EC2_METADATA_DISABLED"] == "true"
    assert seen["credentials"] == {"ok": "None"}  # botocore finds none anywhere
    assert seen["files"] == "None"  # no handle on the bucket
    assert Path(seen["cwd"]).name.startswith("cadenza-op-")
    assert not Path(seen["cwd"]).exists()  # its working directory is gone with it
    if os.geteuid() != 0:  # root reads any process's environ; Lambda never runs as root
        assert seen["parent_environ"]["error"].startswith("PermissionError")


def test_an_asset_cannot_read_other_users_runs_through_the_store(
    env: Container, queue: MemoryQueue, hostile: str
) -> None:
    victim = env.jobs.submit({"name": "v", "operations": [{"_op": "noop"}]}, start=False)[0]
    theirs = env.jobs.start_run(victim.job_id, args=PASSWORD)
    drain(env, queue)
    op = {"_op": "store", "table": env.settings.runs_table, "ex_id": theirs.ex_id}
    run = run_op(env, queue, OTHER, op, [hostile])
    assert run.status == ExStatus.completed, run.errors
    seen = run.result
    assert "hunter2" not in json.dumps(seen)
    assert seen["scan"]["error"].startswith("NoCredentialsError")
    assert "error" in seen["store"], seen


def test_an_asset_cannot_replace_a_built_in_op_for_later_runs(
    env: Container, queue: MemoryQueue, hostile: str
) -> None:
    run = run_op(env, queue, OTHER, {"_op": "patch_echo"}, [hostile])
    assert run.result == {"patched": "pwned"}  # it did, in its own interpreter
    later = run_op(env, queue, OWNER, {"_op": "echo"}, [])
    assert later.status == ExStatus.completed
    assert later.result == {"request": {}, "args": []}


@pytest.mark.parametrize("victim_cached", [False, True])
def test_a_fake_copy_of_another_asset_in_the_cache_is_never_run(
    env: Container, queue: MemoryQueue, admin: Client, hostile: str, victim_cached: bool
) -> None:
    victim = upload(admin, ops_bundle()).json_body["_id"]
    job = {"_op": "tag", "tag": "honest"}
    if victim_cached:
        assert run_op(env, queue, OWNER, job, [victim]).result["tag"] == "honest"
    cache = Path(env.settings.asset_cache_dir)
    fake = base64.b64encode(evil_twin()).decode()
    poison = {"_op": "poison", "cache": str(cache), "victim": victim, "zip": fake}
    attack = run_op(env, queue, OTHER, poison, [hostile])
    assert attack.result == {"written": [".complete", "bundle.zip"]}
    run = run_op(env, queue, OWNER, job, [victim])
    assert run.status == ExStatus.completed, run.errors
    assert run.result == {"tag": "honest", "args": None}
    assert (cache / victim / "bundle.zip").read_bytes() == ops_bundle()  # fetched again


def test_a_deleted_name_and_version_cannot_be_uploaded_again(
    env: Container, queue: MemoryQueue, admin: Client
) -> None:
    honest = upload(admin, ops_bundle()).json_body["_id"]
    with SignedClient(app, OWNER) as c:
        job = c.http.post("/v1/jobs", body=json.dumps(_tag_job(["mathops"])), headers=JSON)
    assert admin.http.delete(f"/v1/assets/{honest}").status_code == 200
    for data in (evil_twin(), ops_bundle()):
        r = upload(admin, data)
        assert r.status_code == 409, r.body
        assert r.json_body["error"] == "conflict"
        assert "mathops@1.0.0 was used by deleted asset" in r.json_body["errors"][0]["reason"]
    with SignedClient(app, OWNER) as c:
        started = c.http.post(f"/v1/jobs/{job.json_body['job_id']}/_start")
    assert started.status_code == 202
    drain(env, queue)
    [run] = env.store.list_runs(job.json_body["job_id"])
    assert run.status == ExStatus.failed  # its pinned asset is gone; nothing else runs
    assert f"unknown asset '{honest}'" in run.errors[-1]["error"]


def _tag_job(assets: list[str]) -> dict[str, Any]:
    return {
        "name": "t",
        "assets": assets,
        "operations": [{"_op": "noop"}, {"_op": "tag", "tag": "x"}],
    }


def test_a_job_keeps_the_versions_it_pinned_until_it_is_updated(
    env: Container, queue: MemoryQueue, admin: Client, clock: FakeClock
) -> None:
    v1 = upload(admin, ops_bundle("1.0.0")).json_body["_id"]
    with SignedClient(app, OWNER) as c:
        job = c.http.post("/v1/jobs", body=json.dumps(_tag_job(["mathops"])), headers=JSON)
        job_id = job.json_body["job_id"]
        assert c.http.get(f"/v1/jobs/{job_id}").json_body["assets"] == [v1]
        clock.advance(10)
        v2 = upload(admin, evil_twin("2.0.0")).json_body["_id"]  # newer, and different
        assert c.http.post(f"/v1/jobs/{job_id}/_start").status_code == 202
        drain(env, queue)
        [run] = env.store.list_runs(job_id)
        assert run.result == {"tag": "x", "args": None} and run.assets == [v1]
        updated = c.http.put(
            f"/v1/jobs/{job_id}", body=json.dumps(_tag_job(["mathops"])), headers=JSON
        )
        assert updated.status_code == 200, updated.body
        assert updated.json_body["assets"] == [v2]  # an update pins again, and says so


def test_an_asset_op_is_stopped_at_its_time_limit_with_what_it_started(
    env: Container, queue: MemoryQueue, hostile: str
) -> None:
    run = run_op(env, queue, OTHER, {"_op": "linger"}, [hostile])
    pid = run.result["pid"]
    assert _gone(pid), "a process the op started outlived it"
    slow = run_op(env, queue, OTHER, {"_op": "slow", "seconds": 30}, [hostile])
    assert slow.status == ExStatus.failed
    assert "ran longer than 8 seconds" in slow.errors[-1]["error"]


def test_an_asset_op_answering_too_much_fails(
    env: Container, queue: MemoryQueue, hostile: str
) -> None:
    run = run_op(env, queue, OTHER, {"_op": "loud", "size": 200_000}, [hostile])
    assert "answer over the limit of 100000 bytes" in run.errors[-1]["error"]


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")  # killed, waiting for its new parent to reap it
