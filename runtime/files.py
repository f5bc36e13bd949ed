"""Writing a file so that a reader sees the old one or the new one, never half of either."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_open(
    path: str | Path, mode: str = "w", *, encoding: str | None = "utf-8", newline: str | None = None, fsync: bool = True
) -> Iterator[IO[Any]]:
    """A file to write `path` through: a temporary file beside it, renamed over `path`
    (`os.replace`) when the block ends without an error, removed when it fails.

    `mode` is "w" (text) or "wb"; `fsync` flushes it to disk before the rename, so that an
    interrupted machine keeps the old file or the new one."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode, encoding=None if mode == "wb" else encoding, newline=newline) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is not None:
            raise
        # A full disk says only "No space left on device": name the file it was writing.
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, data: bytes | str, *, fsync: bool = True) -> Path:
    """Write `data` (bytes, or text as UTF-8) to `path` atomically (`atomic_open`)."""
    with atomic_open(path, "wb", fsync=fsync) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


__all__ = ["atomic_open", "atomic_write"]
