"""Keep the program's frame-sized allocations off the page-fault path.

Every tick allocates a few picture-sized arrays (1.4 MB at 720p) and frees them on another thread.
With glibc's defaults each free can hand the pages back to the kernel (heap trim, or munmap for
blocks over the mmap threshold) and the next tick faults them in again: measured 1 480 page faults
and about 3.5 ms of extra CPU per 720p frame. Raising both thresholds keeps freed frames in the heap
for reuse, so a steady program reaches a steady footprint instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's ceiling on 64-bit
TRIM_THRESHOLD = 256 * 1024 * 1024


def keep_frame_memory() -> bool:
    """Tune glibc's malloc for frame-sized churn; False (and no change) where there is no glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    log.debug("malloc thresholds %s", "raised" if ok else "unchanged")
    return ok
