"""Handing freed heap memory back to the operating system between the inference path's phases.

glibc keeps memory freed by a thread in that thread's arena for reuse. The token encoder's
temporaries (main thread) and the LSTM's (main thread and the backward direction's thread)
would then each keep their own high-water mark, and the process's peak RSS would be their
sum rather than the largest. ``malloc_trim(0)`` returns the free pages of every arena; it
takes well under a millisecond here. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from functools import lru_cache


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


def release_free_memory() -> bool:
    """Give the allocator's free pages back to the OS; False where that is not supported."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
