"""Process-wide settings for fast CPU inference, applied by the `foundry` command (and its benchmark
workers) at start; `FOUNDRY_MALLOC=default` leaves the C allocator as it is.

Why: glibc hands large freed blocks back to the operating system (blocks above its mmap threshold, and
the heap's top above its trim threshold). A model at batch 1 allocates the same few-MB activations on
every call, so each call then pays page faults on fresh pages: on the 2-core VM of the batch-1 study
about a sixth of a call, for teacher and student alike. Keeping freed memory in the process removes
them; the cost is that the process's resident memory stays at its high-water mark instead of shrinking
back between calls (the peak itself does not grow). The same remedy as preloading jemalloc or tcmalloc,
without a second library to install.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc caps the mmap threshold at 32 MiB on 64-bit systems: larger blocks are still mapped apart
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30


def retain_freed_memory() -> bool:
    """Ask glibc to keep freed blocks up to 32 MiB (and up to 1 GiB of free heap top) for reuse.
    Returns whether the setting took (False off Linux/glibc, or with FOUNDRY_MALLOC=default)."""
    if not sys.platform.startswith("linux") or os.environ.get("FOUNDRY_MALLOC", "").lower() == "default":
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl without mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
