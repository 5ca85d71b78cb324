"""Giving a long-running process's free heap back to the system.

glibc keeps memory that a thread freed in that thread's malloc arena for reuse, so a server whose threads
render and encode frames for each visitor holds the peak of every arena long after the visitors left;
`malloc_trim` hands the free pages back. Other C libraries and systems: nothing to do, nothing done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys


@functools.cache
def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def release_free_memory() -> bool:
    """Return the process's free heap pages to the system (glibc); True when anything was released."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def resident_mb() -> float | None:
    """The process's resident set now, in MiB (Linux; None elsewhere)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None
