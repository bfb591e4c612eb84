"""The local stack's users: IAM-like access keys, kept in `<home>/credentials.json` (0600;
`$CADENZA_CREDENTIALS` names another file).

On AWS a caller is an IAM principal and signs with its own access key; locally each user
gets an access key id and secret, and an ARN in the local account
(`arn:aws:iam::000000000000:user/NAME`), which is the principal the API sees. The first
start of `cadenza dev` creates the user `admin` (the admin role); `cadenza users add NAME`
adds others. The file is read again when it changes, so a running stack knows a new user
at once.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import string
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from botocore.credentials import Credentials

from cadenza_tools.local.dynamodb_local import default_home

ACCOUNT = "000000000000"
FILE_NAME = "credentials.json"
ADMIN_USER = "admin"
_NAME = re.compile(r"^[A-Za-z0-9+=,.@_-]{1,64}$")  # IAM's user names


@dataclass(frozen=True)
class LocalUser:
    name: str
    access_key_id: str
    secret_access_key: str
    admin: bool = False

    @property
    def arn(self) -> str:
        return f"arn:aws:iam::{ACCOUNT}:user/{self.name}"

    @property
    def credentials(self) -> Credentials:
        return Credentials(self.access_key_id, self.secret_access_key)


def _new_user(name: str, admin: bool) -> LocalUser:
    if not _NAME.match(name):
        raise ValueError(f"user name {name!r}: 1 to 64 of letters, digits and +=,.@_-")
    upper = string.ascii_uppercase + string.digits
    key = "AKIA" + "".join(secrets.choice(upper) for _ in range(16))
    secret = "".join(secrets.choice(string.ascii_letters + string.digits + "+/") for _ in range(40))
    return LocalUser(name, key, secret, admin)


class LocalUsers:
    """The users of one local stack; `path` None keeps them in memory (tests)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._users: dict[str, LocalUser] = {}
        self._stamp: tuple[int, int] | None = None

    @classmethod
    def default(cls) -> LocalUsers:
        """The file `cadenza dev` and the CLI share: `$CADENZA_CREDENTIALS`, else
        `credentials.json` in `$CADENZA_HOME` (else `.cadenza`)."""
        path = os.environ.get("CADENZA_CREDENTIALS")
        return cls(Path(path) if path else default_home() / FILE_NAME)

    def _load(self) -> dict[str, LocalUser]:
        if self.path is None:
            return self._users
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._users, self._stamp = {}, None
            return self._users
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            raw = json.loads(self.path.read_text())
            self._users = {u["name"]: LocalUser(**u) for u in raw.get("users", [])}
            self._stamp = stamp
        return self._users

    def _save(self, users: dict[str, LocalUser]) -> None:
        self._users = users
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"users": [asdict(u) for u in users.values()]}, out, indent=2)
        tmp.replace(self.path)
        self._stamp = None

    def all(self) -> list[LocalUser]:
        with self._lock:
            return list(self._load().values())

    def get(self, name: str) -> LocalUser | None:
        with self._lock:
            return self._load().get(name)

    def by_key(self, access_key_id: str) -> LocalUser | None:
        with self._lock:
            found = [u for u in self._load().values() if u.access_key_id == access_key_id]
        return found[0] if found else None

    def secret_of(self, access_key_id: str) -> str | None:
        user = self.by_key(access_key_id)
        return None if user is None else user.secret_access_key

    def add(self, name: str, admin: bool = False) -> LocalUser:
        """A new user with new keys; ValueError if the name is taken or not a valid one."""
        with self._lock:
            users = dict(self._load())
            if name in users:
                raise ValueError(f"user {name!r} exists already")
            user = _new_user(name, admin)
            users[name] = user
            self._save(users)
            return user

    def ensure_admin(self) -> tuple[LocalUser, bool]:
        """The user `admin`, created (True) if there is none yet."""
        existing = self.get(ADMIN_USER)
        if existing is not None:
            return existing, False
        return self.add(ADMIN_USER, admin=True), True

    def admin_arns(self) -> list[str]:
        return [u.arn for u in self.all() if u.admin]
