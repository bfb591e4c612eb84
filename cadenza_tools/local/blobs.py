"""The local stack's bucket on disk: result files, asset zips and logs survive a restart.

moto's S3 lives in the server's memory (moto has no persistence of its own: its recorder
replays requests, it keeps no state), so `cadenza dev` with kept data (DynamoDB Local
under `.cadenza/`) gives the app this BlobStore instead: one file per object under
`<data>/blobs/objects/`, named by the key percent-encoded (S3 keys are flat: `a/b` and
`a/b/c` may both exist, a file and a directory of one name may not). A write goes to a
temporary file first and is renamed into place, so a reader or a killed stack never sees
half an object.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import quote, unquote

from chalicelib.domain.errors import StoreUnavailable
from chalicelib.ports import BlobStore


class FileBlobStore(BlobStore):
    """Objects as files under `root` (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.objects = root / "objects"
        self.partial = root / "partial"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.partial.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.objects / quote(key, safe="")

    def put(self, key: str, data: bytes, content_type: str) -> None:
        try:
            fd, tmp = tempfile.mkstemp(dir=self.partial)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self._path(key))
        except OSError as err:
            raise StoreUnavailable(f"local bucket: put {key}: {err.strerror}") from err

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise StoreUnavailable(f"local bucket: get {key}: {err.strerror}") from err

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys(self, prefix: str) -> list[str]:
        return sorted(
            k for k in (unquote(p.name) for p in self.objects.iterdir()) if k.startswith(prefix)
        )
