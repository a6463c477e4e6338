"""Blank pictures: frames that show nothing a caption could describe (black, a flat fade, a
black card with one line of small print).

The captioner writes a fluent sentence for any input, and the domain distance
(:mod:`tvcaption.domain`) lets flat frames through: SynthTV's own backgrounds are flat, so their
backbone features look familiar ("a huge green horse is shaking" over the fade to black that
ends ``testvideo.mp4``). A frame is blank when at least :data:`FLAT_SHARE` of its pixels (every
8th of every 8th row) lie within :data:`TOLERANCE` luma levels of its median: a plain
background, whatever its brightness, with at most a line of small print (a copyright card is
0.98-1.00, a large digit on a plain card 0.97, a street 0.4-0.6). A scene is blank when at least
:data:`BLANK_SHARE` of its sampled frames are. Its caption is stored as out of domain (hidden),
with ``blank: true`` in its data.

Measured by ``bench/domain.py`` (bench/results/domain.md): 0.7% of 300 clips of a fresh
SynthTV test split (seed 1) are blank scenes (an object not yet on screen, or leaving it);
in ``../shared/data/scenes`` the fades through black of ``testvideo.mp4``, the grey fade of
``fades.mp4`` and the empty first second of ``delayed_start.mp4`` are, ``counter.mp4``'s digits
are not (tests/test_domain.py).
"""

from __future__ import annotations

import numpy as np

TOLERANCE = 16.0  # luma levels (0-255) from the frame's median that still count as background
FLAT_SHARE = 0.98  # a frame is blank when at least this share of its pixels are background
BLANK_SHARE = 0.8  # a scene is blank when at least this share of its sampled frames are
STEP = 8  # every 8th pixel and row: enough for the share, ~1/64 of the work
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def blank_share(frames: np.ndarray) -> float:
    """The share of ``frames`` ((K, H, W, 3) uint8 RGB) that are blank; 0.0 for none given."""
    if frames is None or len(frames) == 0:
        return 0.0
    luma = (frames[:, ::STEP, ::STEP].astype(np.float32) @ _LUMA).reshape(len(frames), -1)
    background = np.abs(luma - np.median(luma, axis=1, keepdims=True)) <= TOLERANCE
    return float((background.mean(axis=1) >= FLAT_SHARE).mean())


def is_blank(share: float | None) -> bool:
    return share is not None and share >= BLANK_SHARE
