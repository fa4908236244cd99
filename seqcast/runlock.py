"""One pipeline run at a time per checkout: a file lock under the project root.

Two ``seqcast run`` in one checkout would race on the same DVC outputs, MLflow SQLite
store and Prefect database. The lock is an ``fcntl.flock`` on ``<root>/.seqcast-run.lock``
(git-ignored): the kernel releases it when its holder exits, even when killed, so a
stale file never blocks anyone. The file names the holder (pid, host, user, start
time, command) so the second run can say who is in its way.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = ".seqcast-run.lock"


class RunLocked(RuntimeError):
    """Another ``seqcast run`` holds the checkout's lock."""


def holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process (no details)"
    return (f"pid {info.get('pid')} on {info.get('host')} (user {info.get('user')}), started "
            f"{info.get('started')}: {info.get('command')}")


@contextlib.contextmanager
def run_lock(root: Path, wait_seconds: float = 0.0, poll: float = 1.0) -> Iterator[Path]:
    """Hold the checkout's run lock; wait up to ``wait_seconds`` for it, else raise RunLocked."""
    path = Path(root) / LOCK_NAME
    fh = open(path, "a+")  # noqa: SIM115 - held for the whole run
    deadline = time.monotonic() + wait_seconds
    told = False
    try:
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RunLocked(
                        f"another seqcast run is in progress in {root} ({holder(path)}); its lock is {path}. "
                        f"Wait for it to finish, or pass --wait SECONDS to queue behind it.") from None
                if not told:
                    print(f"seqcast run: waiting up to {wait_seconds:.0f} s for the run in progress "
                          f"({holder(path)})", file=sys.stderr, flush=True)
                    told = True
                time.sleep(poll)
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "user": _user(),
                             "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                             "command": " ".join(["seqcast", *sys.argv[1:]])}))
        fh.flush()
        yield path
    finally:
        fh.close()  # releases the lock


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
