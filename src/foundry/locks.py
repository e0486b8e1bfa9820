"""An advisory lock file, so processes that build or update the same output take turns.

Used where two runs may write one thing at once: a shared token cache being built, or one eval
folder's results.json. POSIX `flock` (released by the kernel when the process dies, so a killed
run never leaves a stuck lock); where it is unavailable the lock is a no-op.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None


@contextlib.contextmanager
def file_lock(path, *, waiting_message: str | None = None, log=print):
    """Hold an exclusive lock on `path` (created if needed) for the `with` block. When another
    process holds it, `waiting_message` is logged once before blocking."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if waiting_message and log is not None:
                    log(waiting_message)
                fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
