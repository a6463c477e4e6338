"""The decord backend: random access through decord's frame index, where it is proven right.

(Named ``decord_reader`` so that it never shadows the ``decord`` package itself.)

:func:`choose_reader` decides per file, the first time frames are read at given times, and
remembers the choice per file (path, size, modification time). What we found decord 0.6.0 gets
wrong, measured against PyAV on real clips:

* MPEG-TS (H.264 remux and MPEG-2, first timestamp hours from zero): ``get_batch`` returns the
  wrong frames (12 to 60 frames off, even for index 0) and its timestamps lose precision
  (float32 on large PTS values).
* AVI (packed B-frames, e.g. DivX/Xvid): the first timestamp is garbage (-3.8e17) and frames
  after a seek are the wrong ones.
* Rotation: this decord build applies the display matrix itself (all of 90/180/270), another
  build may not; the file goes to PyAV so that rotation is applied exactly once, by us.
* Sample aspect ratio is ignored (704x576 PAL stays 704 wide); :func:`read` resizes to display width.
* Variable frame rate: frame index and time do not map linearly; routed to PyAV, which reads
  each frame's own timestamp.

decord is only chosen when cheap checks pass: an indexed container (MP4/MOV, Matroska, MXF), no
rotation, constant frame rate, decord's frame count and timestamps agreeing with the container,
and decord's first frame and one frame in the middle equal to PyAV's.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tvcaption.video.pyav import EPS, indexed_container, open_container, pick_frames, pick_stream, reason

if TYPE_CHECKING:
    from tvcaption.video.info import VideoInfo

log = logging.getLogger("tvcaption.video")

_CHUNK = 32  # decord frames per batch
_LOCK = threading.Lock()
_IDLE: dict[tuple, Any] = {}  # decord readers not in use, by file key
_IDLE_KEEP = 2
_CHOSEN: dict[tuple, str] = {}  # reader chosen, by file key and the probed fields it depends on
_CHOSEN_KEEP = 256


def _file_key(path: str) -> tuple:
    st = os.stat(path)
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns)


def _take(path: str):
    """A decord VideoReader for this file, owned by the caller until :func:`_give_back`."""
    key = _file_key(path)
    with _LOCK:
        vr = _IDLE.pop(key, None)
    if vr is None:
        import decord

        vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=0)
    return key, vr


def _give_back(key: tuple, vr) -> None:
    with _LOCK:
        _IDLE[key] = vr
        while len(_IDLE) > _IDLE_KEEP:
            _IDLE.pop(next(iter(_IDLE)))


def _frame_times(vr) -> np.ndarray:
    ts = np.asarray(vr.get_frame_timestamp(np.arange(len(vr))), dtype=np.float64)
    return ts.reshape(len(vr), 2)


# ------------------------------------------------------------------ reading


def read(info: VideoInfo, req: np.ndarray, out_w: int, out_h: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames shown at the times ``req`` (any order) at (out_w, out_h), and their timestamps."""
    key, vr = _take(info.path)
    try:
        rel = _frame_times(vr)[:, 0]
        rel = rel - rel[0]
        idx = np.clip(np.searchsorted(rel, req + EPS, side="right") - 1, 0, len(rel) - 1)
        uniq, inverse = np.unique(idx, return_inverse=True)
        done: list[np.ndarray] = []
        for lo in range(0, len(uniq), _CHUNK):
            batch = vr.get_batch([int(i) for i in uniq[lo:lo + _CHUNK]]).asnumpy()
            done.extend(_fit(img, info, out_w, out_h) for img in batch)
    finally:
        _give_back(key, vr)
    frames = np.stack([done[i] for i in inverse.reshape(-1)])
    return frames, rel[idx].astype(np.float64)


def _fit(img: np.ndarray, info: VideoInfo, out_w: int, out_h: int) -> np.ndarray:
    """Coded RGB picture -> upright, display-shaped at (out_w, out_h)."""
    k = (-info.rotation // 90) % 4
    pre_w, pre_h = (out_h, out_w) if k % 2 else (out_w, out_h)
    h, w = img.shape[:2]
    if (w, h) != (pre_w, pre_h):
        import cv2

        interp = cv2.INTER_AREA if pre_w * pre_h < w * h else cv2.INTER_LINEAR
        img = cv2.resize(img, (pre_w, pre_h), interpolation=interp)
    if k:
        img = np.rot90(img, k)
    return np.ascontiguousarray(img)


# ------------------------------------------------------------------ choosing


def choose_reader(info: VideoInfo) -> str:
    """"decord" where cheap checks show it is right for this file, else "pyav"; remembered per file."""
    try:
        key = (_file_key(info.path), info.container, info.rotation, info.variable_frame_rate, info.fps,
               info.duration, info.start_time, info.frame_count)
    except OSError:
        return "pyav"  # gone or unreadable: PyAV will say so in one line
    with _LOCK:
        chosen = _CHOSEN.get(key)
    if chosen is not None:
        return chosen
    chosen, why = _choose(info)
    log.debug("%s: reader %s (%s)", info.path, chosen, why)
    with _LOCK:
        _CHOSEN[key] = chosen
        while len(_CHOSEN) > _CHOSEN_KEEP:
            _CHOSEN.pop(next(iter(_CHOSEN)))
    return chosen


def _choose(info: VideoInfo) -> tuple[str, str]:
    """(reader, why)."""
    if not indexed_container(info.container):
        return "pyav", f"container {info.container}: decord seeks to wrong frames / bad timestamps"
    if info.rotation:
        return "pyav", f"rotation {info.rotation}"
    if info.variable_frame_rate:
        return "pyav", "variable frame rate"
    try:
        import decord  # noqa: F401
    except ImportError:
        return "pyav", "decord not installed"
    try:
        key, vr = _take(info.path)
    except Exception as exc:
        return "pyav", f"decord cannot open it ({reason(exc)})"
    try:
        why = _disagrees(vr, info)
    except Exception as exc:
        why = f"decord failed ({reason(exc)})"
    if why:
        return "pyav", why
    _give_back(key, vr)  # keep it open for read()
    return "decord", "indexed container, constant rate, decord agrees with FFmpeg"


def _stream_facts(info: VideoInfo) -> tuple[float, int]:
    """(the stream's own start time in seconds, the container's frame count or 0), from the headers."""
    container = open_container(Path(info.path))
    try:
        stream = pick_stream(container)
        tb = stream.time_base
        start = float(stream.start_time * tb) if stream.start_time is not None else info.start_time
        return start, (stream.frames if stream.frames and stream.frames > 0 else 0)
    finally:
        container.close()


def _disagrees(vr, info: VideoInfo) -> str:
    """Why decord is wrong for this file ("" when its count, timestamps and frames check out)."""
    n = len(vr)
    stream_start, indexed_count = _stream_facts(info)
    expected = indexed_count or info.duration * info.fps
    if n < 1 or abs(n - expected) > max(2.0, 0.01 * expected):
        return f"decord counts {n} frames, the container {expected:.0f}"
    ts = _frame_times(vr)
    starts = ts[:, 0]
    frame_dur = 1.0 / info.fps
    if not np.all(np.isfinite(ts)) or (n > 1 and np.any(np.diff(starts) <= 0)):
        return "decord's timestamps are not increasing"
    if abs(starts[0] - (info.start_time - stream_start)) > frame_dur / 2:
        return f"decord's first timestamp {starts[0]:.3f} s is wrong"
    if abs((ts[-1, 1] - starts[0]) - info.duration) > 1.5 * frame_dur:
        return "decord's timestamps do not span the duration"
    # FFmpeg's first frame, and (one random access) its frame in the middle, against decord's
    mid = n // 2 if n > 2 else None
    t_mid = float(starts[mid] - starts[0]) if mid is not None else None
    ref, ref_t = pick_frames(info, np.array([0.0] if mid is None else [0.0, t_mid]),
                             lambda f: f.to_ndarray(format="rgb24"))
    first = vr[0].asnumpy()
    if first.shape != ref[0].shape or _mad(first, ref[0]) > 3.0:
        return "decord's first frame differs from FFmpeg's"
    if mid is not None:
        got = vr.get_batch([mid]).asnumpy()[0]
        if abs(ref_t[1] - t_mid) > frame_dur / 2 or ref[1].shape != got.shape or _mad(ref[1], got) > 3.0:
            return f"decord's frame {mid} differs from FFmpeg's frame at {t_mid:.3f} s"
    return ""


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


__all__ = ["choose_reader", "read"]
