"""Runs one command and writes its exit code to a file when it ends, so that an agent that
was restarted meanwhile still learns how its task ended: ``python -m cadenza_tools.agent.shim
EXIT_FILE -- ARGV...``. It leads the task's process group and ignores SIGTERM itself (its
child gets it and ends, and the shim records that); SIGKILL ends both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def main(argv: list[str]) -> int:
    exit_file, rest = argv[0], argv[1:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        code = subprocess.call(rest, preexec_fn=_default_term)
    except OSError as err:
        print(f"cannot run {rest[0]!r}: {err}", file=sys.stderr, flush=True)
        code = 127
    tmp = f"{exit_file}.tmp"
    with open(tmp, "w") as f:
        f.write(str(code))
    os.replace(tmp, exit_file)
    return 0


def _default_term() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
