"""Keep indexing's big short-lived buffers out of the C heap, so memory goes back when freed.

Decoded pictures, RGB frames and CNN batches are megabytes each and live for a few scenes.
glibc serves such blocks from the heap once its mmap threshold has crept up (it raises the
threshold every time a mapped block is freed, up to 32 MB), and heap memory freed between live
blocks is not returned to the system: peak RSS then grows with fragmentation. Fixing the
threshold at 1 MB maps every big block on its own and unmaps it when freed (bench/speed.py: about
120 MB less peak RSS on the benchmark recording, no measurable change in speed). Elsewhere than
glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
THRESHOLD = 1 << 20
_done = False


def map_big_blocks() -> bool:
    """Fix glibc's mmap threshold at 1 MB for this process (once); False where it does not apply."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _done = bool(libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD))
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False
    return _done
