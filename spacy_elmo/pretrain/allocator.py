"""The C allocator's settings for a pretraining process: keep freed memory for the next step.

Every training step allocates and frees the same large tensors (the LSTM's saved gates alone are 21 MB per
layer for the ``mini`` preset). glibc's ``malloc`` serves blocks above its mmap threshold with fresh pages and
gives a large free heap top back to the system, so each step faults its memory in again, zero-filled. Raising
the mmap threshold to glibc's maximum (32 MB) and never trimming keeps that memory in the process: on the
2-core Xeon of docs/pretraining.md, a benchmark process running 43 ``mini`` steps had 196k page faults, not
398k. The process then holds the most memory it has used until it exits.
"""

from __future__ import annotations

import ctypes
import sys

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's largest on 64-bit systems
_NEVER_TRIM = 2**31 - 1


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds for this process; False where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) == 1 and mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM) == 1
