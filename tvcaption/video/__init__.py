"""Reading recordings: probe, frames at given times, and one decoding pass over every frame.

The public API (what the rest of tvcaption imports) is here; behind it:

* :mod:`tvcaption.video.info` - :class:`VideoInfo` and :func:`output_size`;
* :mod:`tvcaption.video.probing` - :func:`probe`: container and stream metadata, the first packets'
  timestamps and the first frame, nothing more;
* :mod:`tvcaption.video.pyav` - the PyAV (FFmpeg) engine, right for every file: every
  :func:`iter_frames` pass, and :func:`read_frames` wherever decord is not proven right;
* :mod:`tvcaption.video.decord_reader` - decord's random access, for the files where cheap
  checks show it is right (indexed containers, no rotation, constant rate, frames agreeing with
  FFmpeg's). The choice is made the first time frames are read at given times
  (:attr:`VideoInfo.reader`), and remembered per file.

Times everywhere are seconds from the first displayed frame of the recording: the first frame's
PTS (:attr:`VideoInfo.start_time`, e.g. 36001.4 s for a DVB capture) is subtracted. Frames are
RGB uint8, upright (rotation applied) and display-shaped (sample aspect ratio applied).

Heavy imports (av, decord, cv2) happen inside functions.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence

import numpy as np

from tvcaption.errors import VideoError
from tvcaption.video import decord_reader, pyav
from tvcaption.video.info import VideoInfo, output_size
from tvcaption.video.probing import probe

log = logging.getLogger("tvcaption.video")


def read_frames(path_or_info: str | os.PathLike | VideoInfo, times: Sequence[float],
                size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The frame displayed at each time (the last frame whose timestamp is <= t) and its timestamp.

    ``times`` are seconds from the first frame, in any order (sorted is fastest); times before the
    first frame give the first frame, times after the last give the last. Returns RGB uint8
    ``(N, H, W, 3)`` upright, display-shaped frames (shorter side resized to ``size`` when given)
    and the exact timestamps ``(N,)`` of the frames returned.
    """
    info = _info(path_or_info)
    req = np.asarray(times, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(req)):
        raise ValueError("read_frames: times must be finite numbers of seconds")
    out_w, out_h = output_size(info, size)
    if req.size == 0:
        return np.zeros((0, out_h, out_w, 3), np.uint8), np.zeros(0, np.float64)
    if info.reader == "decord":
        try:
            return decord_reader.read(info, req, out_w, out_h)
        except VideoError:
            raise
        except Exception as exc:  # decord failed on this file after all: PyAV is always right
            log.warning("%s: decord failed (%s); reading with PyAV", info.path, exc)
    return pyav.read(info, req, out_w, out_h)


def iter_frames(path_or_info: str | os.PathLike | VideoInfo, size: int | None = None,
                step: int = 1, bgr: bool = False, scaler: str = "swscale") -> Iterator[tuple[float, np.ndarray]]:
    """Every ``step``-th frame in display order with its time in seconds from the first frame.

    One sequential decoding pass (PyAV, threaded); frames are RGB uint8 (BGR with ``bgr``, what
    OpenCV and PySceneDetect's detectors take), upright and display-shaped, shorter side resized
    to ``size`` when given (``scaler``: see :func:`tvcaption.video.pyav.converter`).
    """
    if step < 1:
        raise ValueError("iter_frames: step must be >= 1")
    info = _info(path_or_info)
    out_w, out_h = output_size(info, size)
    convert = pyav.converter(info, out_w, out_h, "bgr24" if bgr else "rgb24", scaler)
    with pyav.PyavCursor(info) as cursor:
        for i, (t, frame) in enumerate(cursor.frames()):
            if i % step == 0:
                yield t, convert(frame)


def sample_times(start: float, end: float, n: int) -> np.ndarray:
    """``n`` times uniformly inside [start, end): the centres of n equal bins."""
    if n <= 0:
        return np.zeros(0, np.float64)
    start, end = float(start), float(end)
    if end < start:
        start, end = end, start
    return start + (np.arange(n, dtype=np.float64) + 0.5) * ((end - start) / n)


def _info(path_or_info: str | os.PathLike | VideoInfo) -> VideoInfo:
    return path_or_info if isinstance(path_or_info, VideoInfo) else probe(path_or_info)


__all__ = ["VideoInfo", "probe", "read_frames", "iter_frames", "sample_times", "output_size"]
