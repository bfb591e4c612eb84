"""LocalStack (community, host mode: no Docker, no account) set up and run for Cadenza.

:func:`install` makes, on first use and under ``<CADENZA_HOME>/localstack/``:

* ``venv/``: a Python 3.13 venv (LocalStack 4.14 uses 3.12+ syntax; its DynamoDB provider
  needs 3.13) with ``localstack-core[runtime]`` pinned and the constraints that install;
* ``root/var/lib/localstack/lib/``: LocalStack's packages as it looks for them, without
  downloading any: the DynamoDB Local ``make dev`` fetches (from npm), the installed JDK
  where it looks for its Java 21 (DynamoDB Local runs on 17+), and an empty Java agent in
  place of the ``ddb-local-loader`` it always passes (the real one lifts a 20-GSI limit).

:class:`LocalStackServer` runs it as a subprocess (``python -m localstack.runtime.main``)
and waits until its DynamoDB answers; ``stop`` ends it and its DynamoDB Local. It binds
0.0.0.0 whatever the port says, and keeps no data across its own restart.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self
from urllib.parse import urlsplit

import requests

from cadenza_tools.local.dynamodb_local import (
    JAR_NAME,
    LOG_DIR_NAME,
    default_home,
    find_java,
    port_in_use,
    probe_client,
)
from cadenza_tools.local.dynamodb_local import install as install_dynamodb_local
from cadenza_tools.local.service import ProcessService

VERSION = "4.14.0"
# newer releases of cbor2, pyopenssl and cryptography broke the install (2026-11)
REQUIREMENTS = (
    f"localstack-core[runtime]=={VERSION}",
    "cbor2<6",
    "pyopenssl<25.2",
    "cryptography<46",
    "service-identity",
)
# a LocalStack plugin (infra/localstack-no-code): Lambda functions are created, never run
NO_CODE_PLUGIN = Path(__file__).resolve().parents[2] / "infra" / "localstack-no-code"
NO_CODE_EXECUTOR = "cadenza-no-code"
DEFAULT_PORT = 4566
# what `cadenza dev` uses; `cadenza deploy` needs DEPLOY_SERVICES
SERVICES = ("dynamodb", "sqs", "s3", "sns", "sts", "ssm", "secretsmanager")
DEPLOY_SERVICES = (
    *SERVICES,
    "cloudformation",
    "iam",
    "lambda",
    "apigateway",
    "events",
    "logs",
    "cloudwatch",
)
PYTHON_ENV = "CADENZA_PYTHON313"  # a Python 3.13 to use instead of pyenv's / PATH's
DIR_NAME = "localstack"
AGENT_NAME = "ddb-local-loader-0.1.jar"
READY_TIMEOUT_S = 240.0  # about 25 s on an idle machine
STOP_TIMEOUT_S = 20.0

Say = Callable[[str], None]


class LocalStackError(RuntimeError):
    """LocalStack could not be set up or started; the message says what is missing."""


def base_dir(home: Path | None = None) -> Path:
    return (home if home is not None else default_home()) / DIR_NAME


def lib_dir(home: Path | None = None) -> Path:
    """Where LocalStack (with ``FILESYSTEM_ROOT=root``) looks for its packages."""
    return base_dir(home) / "root" / "var" / "lib" / "localstack" / "lib"


def _version_key(path: str) -> tuple[int, ...]:
    tail = Path(path).parents[1].name  # .../versions/3.13.1/bin/python
    return tuple(int(p) for p in tail.split(".") if p.isdigit())


def find_python313() -> str:
    """A Python 3.13: ``$CADENZA_PYTHON313``, else pyenv's newest 3.13.x, else ``python3.13``."""
    given = os.environ.get(PYTHON_ENV)
    if given:
        return given
    roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")]
    pyenv = shutil.which("pyenv")
    if pyenv is not None:
        found = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
        roots.insert(0, found.stdout.strip())
    for root in filter(None, roots):
        pythons = glob.glob(os.path.join(root, "versions", "3.13.*", "bin", "python"))
        if pythons:
            return max(pythons, key=_version_key)
    on_path = shutil.which("python3.13")
    if on_path is not None:
        return on_path
    raise LocalStackError(
        f"LocalStack {VERSION} needs Python 3.13: none in pyenv ({', '.join(filter(None, roots))})"
        f" nor python3.13 on PATH; `pyenv install 3.13` or set {PYTHON_ENV}=/path/to/python3.13"
    )


def install_venv(venv: Path, say: Say) -> Path:
    """The venv's python, made (with :data:`REQUIREMENTS`) if it is not there."""
    python = venv / "bin" / "python"
    marker = venv / ".cadenza-installed"
    wanted = " ".join([*REQUIREMENTS, NO_CODE_PLUGIN.name]) + "\n"
    if python.is_file() and marker.is_file() and marker.read_text() == wanted:
        return python
    if not python.is_file():
        base = find_python313()
        say(f"creating LocalStack's venv {venv} (Python {base})")
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    say(f"installing localstack-core {VERSION} into {venv} (from PyPI; a few minutes)")
    pip = [str(python), "-m", "pip", "install", "-q", *REQUIREMENTS, str(NO_CODE_PLUGIN)]
    done = subprocess.run(pip, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LocalStackError(f"pip install {' '.join(REQUIREMENTS)} failed:\n{done.stderr}")
    marker.write_text(wanted)
    return python


def place_dynamodb_local(lib: Path, home: Path | None) -> Path:
    """DynamoDB Local where LocalStack runs it from (``dynamodb-local/2``)."""
    target = lib / "dynamodb-local" / "2"
    if not (target / JAR_NAME).is_file():
        source = install_dynamodb_local(home)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, target, dirs_exist_ok=True)
    return target


def link_java(lib: Path) -> Path:
    """The installed JDK where LocalStack looks for its Java 21 (``java/21``)."""
    link = lib / "java" / "21"
    if not (link / "bin" / "java").exists():
        java_home = Path(os.path.realpath(find_java())).parents[1]
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(java_home)
    return link


def build_agent(path: Path) -> Path:
    """A Java agent that does nothing, named as LocalStack's DynamoDB loader."""
    if path.is_file():
        return path
    javac, jar = shutil.which("javac"), shutil.which("jar")
    if javac is None or jar is None:
        raise LocalStackError("javac and jar (a JDK) are needed to build an empty Java agent")
    with tempfile.TemporaryDirectory() as tmp:
        build = Path(tmp)
        (build / "CadenzaNoopAgent.java").write_text(
            "public class CadenzaNoopAgent { public static void premain(String a) {} }\n"
        )
        (build / "manifest.txt").write_text(
            "Manifest-Version: 1.0\nPremain-Class: CadenzaNoopAgent\n"
        )
        subprocess.run(
            [javac, "--release", "17", "-d", tmp, str(build / "CadenzaNoopAgent.java")],
            check=True,
        )
        partial = path.with_suffix(".tmp")
        manifest = str(build / "manifest.txt")
        classes = ["-C", tmp, "CadenzaNoopAgent.class"]
        subprocess.run([jar, "cfm", str(partial), manifest, *classes], check=True)
        partial.replace(path)
    return path


def install(home: Path | None = None, say: Say = print) -> Path:
    """Everything LocalStack needs here (idempotent); returns the venv's python."""
    python = install_venv(base_dir(home) / "venv", say)
    lib = lib_dir(home)
    ddb = place_dynamodb_local(lib, home)
    link_java(lib)
    build_agent(ddb / AGENT_NAME)
    return python


class LocalStackServer(ProcessService):
    """LocalStack as a subprocess on ``127.0.0.1:port``, set up first; a context manager.

    Its output goes to ``<home>/logs/localstack.log``.
    """

    host = "127.0.0.1"
    not_started = LocalStackError
    label = "LocalStack"

    def __init__(
        self,
        port: int = DEFAULT_PORT,
        *,
        home: Path | None = None,
        services: tuple[str, ...] = SERVICES,
        say: Say = print,
    ) -> None:
        self.home = home if home is not None else default_home()
        self.requested_port = port
        self.services = services
        self.say = say
        self.log_path = self.home / LOG_DIR_NAME / "localstack.log"
        self._port = None

    def environment(self, port: int) -> dict[str, str]:
        """The parent's environment without endpoints or Cadenza's settings, plus
        LocalStack's host-mode settings."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_ENDPOINT_URL", "CADENZA_", "LOCALSTACK_"))
        }
        env.update(
            OVERRIDE_IN_DOCKER="0",  # these machines have /.dockerenv
            FILESYSTEM_ROOT=str(base_dir(self.home) / "root"),
            GATEWAY_LISTEN=f"{self.host}:{port}",
            LOCALSTACK_HOST=f"{self.host}:{port}",
            SQS_ENDPOINT_STRATEGY="path",
            DISABLE_EVENTS="1",
            SKIP_SSL_CERT_DOWNLOAD="1",
            SERVICES=",".join(self.services),
            LAMBDA_RUNTIME_EXECUTOR=NO_CODE_EXECUTOR,  # no Docker here: functions never run
        )
        return env

    def start(self) -> Self:
        """Set up (on first use), launch, and wait until its DynamoDB answers."""
        if self.running:
            return self
        python = install(self.home, self.say)
        port = self.requested_port
        if port_in_use(port, self.host):
            raise LocalStackError(f"port {port} is already in use")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self._log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} port {port}\n".encode())
        self._log.flush()
        self._proc = subprocess.Popen(
            [str(python), "-m", "localstack.runtime.main"],
            env=self.environment(port),
            cwd=base_dir(self.home),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its DynamoDB Local JVM is stopped with it
        )
        atexit.register(self.stop)
        self._port = port
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        ddb = probe_client(self.endpoint, read_timeout=30)
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise LocalStackError(f"LocalStack exited during start-up; see {self.log_path}")
            try:
                if is_localstack(self.endpoint):
                    ddb.list_tables(Limit=1)  # its DynamoDB Local starts on first use
                    return
            except Exception as exc:
                last = exc
            time.sleep(0.5)
        raise LocalStackError(
            f"LocalStack did not answer within {READY_TIMEOUT_S:g}s ({last}); see {self.log_path}"
        )

    def stop(self) -> None:
        """SIGTERM to LocalStack, then its whole process group (its JVM) if it lingers."""
        atexit.unregister(self.stop)
        proc = self._end(STOP_TIMEOUT_S)
        if proc is not None:
            with contextlib.suppress(OSError):  # the group is gone: nothing lingers
                os.killpg(proc.pid, signal.SIGKILL)


def is_localstack(endpoint: str) -> bool:
    """Whether a LocalStack answers its health check at ``endpoint``."""
    try:
        response = requests.get(f"{endpoint}/_localstack/health", timeout=2)
    except requests.RequestException:
        return False
    return response.status_code == 200 and "services" in response.text


def run_foreground(server: LocalStackServer) -> int:
    """Start ``server``, print where it is, and keep it until Ctrl-C / SIGTERM."""

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        with server:
            print(f"LocalStack {VERSION} on {server.endpoint} ({', '.join(server.services)})")
            print(f"  log {server.log_path}; Ctrl-C to stop", flush=True)
            while server.running:
                time.sleep(0.5)
            print(f"LocalStack exited; see {server.log_path}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def ensure_running(endpoint: str, say: Say = print) -> LocalStackServer | None:
    """None if a LocalStack answers at ``endpoint``; else one started on its port (set up
    first), for the caller to stop. Only a local endpoint is started."""
    if is_localstack(endpoint):
        return None
    parsed = urlsplit(endpoint)
    if parsed.hostname not in ("127.0.0.1", "localhost") or parsed.scheme != "http":
        raise LocalStackError(f"no LocalStack answers at {endpoint}")
    say(f"no LocalStack at {endpoint}: starting one (log: {default_home() / LOG_DIR_NAME})")
    return LocalStackServer(parsed.port or DEFAULT_PORT, say=say).start()
