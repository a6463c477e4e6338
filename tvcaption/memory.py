"""Keep indexing's big short-lived buffers out of the C heap, so memory goes back when freed,
without paying a page fault for every page of every frame.

Decoded pictures, RGB frames and CNN batches are megabytes each and live for a few scenes.
glibc serves such blocks from the heap once its mmap threshold has crept up (it raises the
threshold every time a mapped block is freed, up to 32 MB), and heap memory freed between live
blocks is not returned to the system: peak RSS then grows with fragmentation (bench/speed.py:
about 120 MB more on the benchmark recording).

The threshold is therefore fixed, at 8 MB: blocks bigger than that (a scene's stacked frames, a
batch of CNN activations) are mapped on their own and unmapped when freed. It was 1 MB, which
also mapped the full-size picture converted for the detector on every frame of an SD broadcast
(1.2 MB) and faulted it in page by page: on the AVX2 EPYC a 2-minute index took 1.87 million
minor page faults and 10 s of system time, against 0.58 million and 4.5 s now (`/usr/bin/time
-v`; the wall time 0.83x in an alternating A/B, bench/results/compare_malloc_thresholds.json). A
1080p frame, 6.2 MB, stays under 8 MB too. Memory freed at the top of the heap is kept up to 32
MB instead of glibc's 128 kB, so the next frame does not fault it in again. Peak RSS on that run:
1,260 -> 1,295 MB; without fixing anything, 1,444 MB. Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters
M_MMAP_THRESHOLD = -3
THRESHOLD = 8 << 20
TRIM = 32 << 20
_done = False


def map_big_blocks() -> bool:
    """Fix glibc's mmap threshold (8 MB) and trim threshold (32 MB) for this process, once;
    False where it does not apply."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _done = bool(libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM))
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False
    return _done
