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


def read_cnn_frames(path_or_info: str | os.PathLike | VideoInfo, times: Sequence[float]) -> np.ndarray:
    """The frames the CNN reads at ``times``: upright, at the size they were coded (not stretched to
    their display shape), RGB uint8 ``(N, H, W, 3)``. The CNN squashes every frame to its square
    input anyway, so the picture it sees has the same geometry either way, resampled once instead
    of twice. Every path to the CNN reads frames this way: the single pass (:mod:`tvcaption.stream`),
    two passes, features for training. Square pixels: exactly :func:`read_frames`."""
    info = _info(path_or_info)
    if info.square_pixels:
        return read_frames(info, times)[0]  # decord's random access where it is proven right
    req = np.asarray(times, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(req)):
        raise ValueError("read_cnn_frames: times must be finite numbers of seconds")
    if req.size == 0:
        return np.zeros((0, info.height, info.width, 3), np.uint8)
    return np.stack(pyav.pick_frames(info, req, pyav.coded_converter(info))[0])


def shown_picks(sampled: int, keep: int) -> np.ndarray:
    """Which of a scene's ``sampled`` frames analysers that read pictures get: ``keep`` of them,
    evenly spread between the first and the last (which are left out), or all."""
    if keep >= sampled:
        return np.arange(sampled)
    return np.unique(np.linspace(0, sampled - 1, keep + 2)[1:-1].round().astype(int))


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


__all__ = ["VideoInfo", "probe", "read_frames", "read_cnn_frames", "iter_frames", "sample_times", "shown_picks",
           "output_size"]
