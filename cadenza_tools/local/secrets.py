"""The local stack's secrets: the SSM parameters and Secrets Manager secrets that jobs name
(`{{resolve:ssm:NAME}}`), kept in `secrets.json` beside the stack's credentials file (0600)
and put into moto, which serves SSM and Secrets Manager to the workers as AWS would.

moto keeps nothing across a restart: `cadenza dev` puts every kept secret into moto when it
starts, and `cadenza secrets put` puts a new one into a running stack at once (the stack
writes its endpoint to `stack.json` beside them while it runs)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import boto3

from cadenza_tools.local.dynamodb_local import default_home
from cadenza_tools.local.users import LocalUsers

log = logging.getLogger(__name__)
FILE_NAME = "secrets.json"
STACK_FILE = "stack.json"
SERVICES = ("ssm", "secretsmanager")
# what the local stack signs with when the environment has no keys: emulators check none
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


@dataclass(frozen=True)
class LocalSecret:
    service: str  # ssm | secretsmanager
    name: str
    value: str

    @property
    def reference(self) -> str:
        return f"{{{{resolve:{self.service}:{self.name}}}}}"


def _write_private(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(document, out, indent=2)
    tmp.replace(path)


class LocalSecrets:
    """The secrets kept in one file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def beside(cls, users: LocalUsers) -> LocalSecrets:
        """The secrets kept beside these users' credentials file."""
        credentials = users.path if users.path is not None else default_home() / "credentials.json"
        return cls(credentials.with_name(FILE_NAME))

    @classmethod
    def default(cls) -> LocalSecrets:
        """Beside the credentials file `cadenza dev` and the CLI share."""
        return cls.beside(LocalUsers.default())

    @property
    def stack_file(self) -> Path:
        return self.path.with_name(STACK_FILE)

    def all(self) -> list[LocalSecret]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        return [LocalSecret(**s) for s in raw.get("secrets", [])]

    def put(self, secret: LocalSecret) -> None:
        """Keep `secret` (replacing one of the same service and name)."""
        if secret.service not in SERVICES:
            raise ValueError(f"service {secret.service!r}: one of {', '.join(SERVICES)}")
        kept = [s for s in self.all() if (s.service, s.name) != (secret.service, secret.name)]
        _write_private(self.path, {"secrets": [asdict(s) for s in [*kept, secret]]})

    def running_endpoint(self) -> tuple[str, str] | None:
        """The moto endpoint and region of the stack running now, if one is."""
        try:
            info = json.loads(self.stack_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return str(info["endpoint_url"]), str(info["region"])


def emulator_credentials() -> dict[str, str]:
    """The keys the local stack uses, by its rule: the environment's when it has both,
    else :data:`DUMMY_CREDENTIALS` (so a plain shell reaches the stack's emulators too)."""
    keys = {k: os.environ.get(k, "") for k in DUMMY_CREDENTIALS}
    return keys if all(keys.values()) else dict(DUMMY_CREDENTIALS)


def put_into(endpoint: str, region: str, secrets: list[LocalSecret]) -> None:
    """Create or overwrite each secret in the SSM / Secrets Manager at `endpoint`."""
    keys = emulator_credentials()
    token = None if keys == DUMMY_CREDENTIALS else os.environ.get("AWS_SESSION_TOKEN")
    session = boto3.session.Session(
        aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=token,
        region_name=region,
    )
    ssm = session.client("ssm", endpoint_url=endpoint)
    sm = session.client("secretsmanager", endpoint_url=endpoint)
    for s in secrets:
        if s.service == "ssm":
            ssm.put_parameter(Name=s.name, Value=s.value, Type="SecureString", Overwrite=True)
            continue
        try:
            sm.put_secret_value(SecretId=s.name, SecretString=s.value)
        except sm.exceptions.ResourceNotFoundException:
            sm.create_secret(Name=s.name, SecretString=s.value)


def publish_stack(secrets: LocalSecrets, endpoint: str, region: str) -> None:
    """Put the kept secrets into the stack's moto and say where it is (`stack.json`). An
    emulator that does not serve SSM or Secrets Manager does not stop the stack."""
    try:
        put_into(endpoint, region, secrets.all())
    except Exception as exc:  # any emulator failure: the jobs that name them will say so
        log.warning("the kept secrets were not put into %s: %s", endpoint, exc)
    _write_private(secrets.stack_file, {"endpoint_url": endpoint, "region": region})


def unpublish_stack(secrets: LocalSecrets) -> None:
    secrets.stack_file.unlink(missing_ok=True)
