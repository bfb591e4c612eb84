"""LocalStack's set-up on this machine (cadenza_tools/local/localstack.py) without starting
it, and the keys the CLI uses to reach the local stack's emulators."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import pytest

from cadenza_tools.local import localstack as ls
from cadenza_tools.local.secrets import DUMMY_CREDENTIALS, emulator_credentials


def _python(root: Path, version: str) -> Path:
    python = root / "versions" / version / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.touch()
    return python


def test_the_newest_pyenv_313_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ls.PYTHON_ENV, raising=False)
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    monkeypatch.setenv("PATH", "")  # no pyenv, no python3.13 on PATH
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    _python(tmp_path, "3.12.1")
    _python(tmp_path, "3.13.2")
    newest = _python(tmp_path, "3.13.10")
    assert ls.find_python313() == str(newest)
    monkeypatch.setenv(ls.PYTHON_ENV, "/opt/py313/bin/python")
    assert ls.find_python313() == "/opt/py313/bin/python"


def test_no_313_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ls.PYTHON_ENV, raising=False)
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    monkeypatch.setenv("PATH", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    _python(tmp_path, "3.12.1")
    with pytest.raises(ls.LocalStackError, match=r"needs Python 3\.13.*pyenv install 3\.13"):
        ls.find_python313()


@pytest.mark.skipif(shutil.which("javac") is None, reason="needs a JDK")
def test_lib_gets_dynamodb_local_java_and_an_agent(tmp_path: Path) -> None:
    home = tmp_path / "home"
    fetched = home / "dynamodb-local"
    fetched.mkdir(parents=True)
    (fetched / "DynamoDBLocal.jar").write_bytes(b"jar")  # as `make dev` leaves it
    lib = ls.lib_dir(home)
    ddb = ls.place_dynamodb_local(lib, home)
    assert ddb == lib / "dynamodb-local" / "2"
    assert (ddb / "DynamoDBLocal.jar").read_bytes() == b"jar"
    java = ls.link_java(lib) / "bin" / "java"
    assert os.access(java, os.X_OK)
    agent = ls.build_agent(ddb / ls.AGENT_NAME)
    with zipfile.ZipFile(agent) as jar:
        manifest = jar.read("META-INF/MANIFEST.MF").decode()
    assert "Premain-Class: CadenzaNoopAgent" in manifest
    assert ls.build_agent(agent) == agent  # kept


def test_environment_is_host_mode_without_the_callers_endpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://elsewhere:1")
    monkeypatch.setenv("CADENZA_PREFIX", "x")
    env = ls.LocalStackServer(14566, home=tmp_path, services=("dynamodb", "sqs")).environment(14566)
    assert "AWS_ENDPOINT_URL" not in env and "CADENZA_PREFIX" not in env
    assert env["OVERRIDE_IN_DOCKER"] == "0" and env["SERVICES"] == "dynamodb,sqs"
    assert env["GATEWAY_LISTEN"] == env["LOCALSTACK_HOST"] == "127.0.0.1:14566"
    assert env["FILESYSTEM_ROOT"] == str(tmp_path / "localstack" / "root")


def test_a_remote_endpoint_is_not_started(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ls, "is_localstack", lambda endpoint: False)
    with pytest.raises(ls.LocalStackError, match=r"no LocalStack answers at http://ls\.internal"):
        ls.ensure_running("http://ls.internal:4566")
    monkeypatch.setattr(ls, "is_localstack", lambda endpoint: True)
    assert ls.ensure_running("http://ls.internal:4566") is None


def test_the_cli_signs_as_the_stack_does(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key, raising=False)
    assert emulator_credentials() == DUMMY_CREDENTIALS
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    assert emulator_credentials() == DUMMY_CREDENTIALS  # half a pair: the stack's dummy keys
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    assert emulator_credentials() == {
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
    }
