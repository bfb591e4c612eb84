"""The child side of an asset op (see `chalicelib.ops.sandbox`): run as a script by a fresh
`python -I -S`, it reads one call as JSON on stdin, imports the op from the bundle extracted in
its working directory, and writes `{"ok": result}` or `{"error": text}` on its stdout.

Standard library only, and nothing of Cadenza: the child must not need the worker's
packages, configuration or credentials. What the op prints goes to stderr.
"""

from __future__ import annotations

import ctypes
import importlib
import itertools
import json
import os
import resource
import sys
import traceback
import types
from typing import Any

PR_SET_DUMPABLE = 4


def _harden(max_file_bytes: int) -> None:
    """Another op's child cannot read this one's memory or environment through /proc, and
    no file it writes (its answer included) grows past the cap."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))


def _op(call: dict[str, Any]) -> Any:
    package = str(call["package"])
    module = types.ModuleType(package)
    module.__path__ = [os.path.join(os.getcwd(), "bundle", str(call["root"]))]
    sys.modules[package] = module
    module_name, fn_name = str(call["target"]).split(":", 1)
    return getattr(importlib.import_module(f"{package}.{module_name}"), fn_name)


def _run(call: dict[str, Any]) -> Any:
    fn = _op(call)
    if call["role"] == "reader":
        limit = int(call["max_slices"]) + 1  # one more: the caller says "too many"
        return list(itertools.islice(fn(call["params"], call["args"]), limit))
    ctx = types.SimpleNamespace(**call["ctx"], files=None)
    return fn(call["params"], call["data"], ctx)


def main() -> None:
    answer = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # the op's prints go to stderr, not into the answer
    sys.stdout = sys.stderr
    call = json.loads(sys.stdin.read())
    _harden(int(call["max_output"]))
    try:
        out: dict[str, Any] = {"ok": _run(call)}
        text = json.dumps(out)
    except BaseException as exc:  # the op's failure, whatever it raised, is the answer
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        text = json.dumps({"error": error})
    if len(text.encode()) > int(call["max_output"]):
        text = json.dumps({"error": f"answer over the limit of {call['max_output']} bytes"})
    answer.write(text)
    answer.flush()


if __name__ == "__main__":
    main()
