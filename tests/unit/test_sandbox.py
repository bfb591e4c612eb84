"""The child process of asset ops, without a store: what comes back when an op fails in
each way it can, and that the worker is kept out of /proc."""

from __future__ import annotations

import ctypes
import sys

import pytest

from chalicelib.domain.assets import Asset, AssetLimits, asset_id_of, sha_of
from chalicelib.ops.sandbox import AssetOpFailed, Sandbox
from tests.integration.test_assets import make_zip

OPS_PY = """
import os


def fine(params, data, ctx):
    print("a print goes to the log")
    return {"data": data, "order": ctx.order, "files": ctx.files}


def raises(params, data, ctx):
    raise ValueError("no such thing")


def exits(params, data, ctx):
    os._exit(3)


def not_json(params, data, ctx):
    return object()


def numbers(params, args):
    n = 0
    while True:
        yield {"n": n}
        n += 1
"""


def _run(target: str, call: dict[str, object], files: dict[str, str] | None = None) -> object:
    data = make_zip({"asset.json": {"name": "t", "version": "1"}, **(files or {"m.py": OPS_PY})})
    asset = Asset(asset_id_of(data), "t", "1", sha_of(data), len(data), "k", 0.0)
    sandbox = Sandbox(AssetLimits(), timeout=20, max_output=10_000)
    ctx = {"ex_id": "e", "job_id": "j", "order": 4, "attempt": 1, "args": None}
    return sandbox.call(asset, data, target, {"role": "processor", "ctx": ctx, **call})


def test_an_op_answers_json_and_its_prints_stay_out_of_it() -> None:
    got = _run("m:fine", {"params": {}, "data": [1]})
    assert got == {"data": [1], "order": 4, "files": None}


@pytest.mark.parametrize(
    ("target", "files", "words"),
    [
        ("m:raises", None, "ValueError: no such thing"),
        ("m:exits", None, "ended without an answer (exit code 3)"),
        ("m:not_json", None, "TypeError: Object of type object is not JSON serializable"),
        ("m:gone", None, "AttributeError"),
        ("bad:f", {"bad.py": "def f(:\n"}, "SyntaxError"),
    ],
)
def test_a_failing_op_fails_the_call_with_its_reason(
    target: str, files: dict[str, str] | None, words: str
) -> None:
    with pytest.raises(AssetOpFailed) as err:
        _run(target, {"params": {}, "data": None}, files)
    assert words in str(err.value)
    assert "cadenza-op-" not in str(err.value)  # no worker path


def test_a_reader_gives_at_most_one_slice_over_the_limit() -> None:
    got = _run("m:numbers", {"role": "reader", "params": {}, "args": None, "max_slices": 5})
    assert got == [{"n": n} for n in range(6)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_the_worker_is_not_dumpable_once_it_ran_an_asset_op() -> None:
    _run("m:fine", {"params": {}, "data": None})
    pr_get_dumpable = 3
    assert ctypes.CDLL(None).prctl(pr_get_dumpable, 0, 0, 0, 0) == 0
