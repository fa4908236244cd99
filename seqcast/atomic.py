"""Atomic file writes: a stage output is either the old version or the new one, never half.

Every writer of a pipeline output writes to a temporary file in the *same folder* and
renames it over the target (``os.replace`` is atomic within one file system). A
process killed with SIGKILL mid-write leaves at most a hidden ``.<name>.tmp-*`` file,
which DVC removes with the stage's other outputs when it runs the stage again; the
target itself is never half-written. A write that fails (disk full, file size limit,
permission) raises :class:`ArtifactWriteError` naming the file, removes the temporary
file and leaves the previous version in place.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["ArtifactWriteError", "atomic_path", "write_bytes", "write_text", "write_json", "write_parquet",
           "copy_file"]

_FULL = {errno.ENOSPC: "the disk is full", errno.EFBIG: "the file size limit was reached",
         errno.EDQUOT: "the disk quota is exceeded"}


class ArtifactWriteError(OSError):
    """A file could not be written; the previous version (if any) is intact."""


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` at once."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a fresh hidden name (created by the writer with the usual permissions, not mkstemp's 0600)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, ArtifactWriteError):
            raise
        why = _FULL.get(err.errno, err.strerror or str(err))
        raise ArtifactWriteError(err.errno, f"could not write {path}: {why} ({err}); "
                                            f"the previous version, if any, is left intact") from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    return write_bytes(path, text.encode(encoding))


def write_json(path: str | Path, obj: Any, **dumps: Any) -> Path:
    """JSON with a trailing newline (``indent=2`` unless given)."""
    dumps.setdefault("indent", 2)
    return write_text(path, json.dumps(obj, **dumps) + "\n")


def write_parquet(path: str | Path, frame: Any, **kwargs: Any) -> Path:
    """``frame.to_parquet`` through a temporary file (``index=False`` unless given)."""
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, **kwargs)
    return Path(path)


def copy_file(src: str | Path, dest: str | Path) -> Path:
    """A byte-for-byte copy that appears at ``dest`` only when complete."""
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dest)
