"""Reading recordings: probe, frames at given times, and one decoding pass over every frame.

Two readers sit behind one interface:

* **decord** (random access through its frame index) for files where it is right, and
* **PyAV** (FFmpeg) for everything else.

:func:`probe` decides per file and records the choice in :attr:`VideoInfo.reader`. What we found
decord 0.6.0 gets wrong, measured against PyAV on real clips:

* MPEG-TS (H.264 remux and MPEG-2, first timestamp hours from zero): ``get_batch`` returns the
  wrong frames (12 to 60 frames off, even for index 0) and its timestamps lose precision
  (float32 on large PTS values).
* AVI (packed B-frames, e.g. DivX/Xvid): the first timestamp is garbage (-3.8e17) and frames
  after a seek are the wrong ones.
* Rotation: this decord build applies the display matrix itself (all of 90/180/270), another
  build may not; the file goes to PyAV so that rotation is applied exactly once, here.
* Sample aspect ratio is ignored (704x576 PAL stays 704 wide); we resize to display width.
* Variable frame rate: frame index and time do not map linearly; routed to PyAV, which reads
  each frame's own timestamp.

The decord path is only taken when cheap checks pass: an indexed container (MP4/MOV, Matroska,
MXF), no rotation, constant frame rate, decord's frame count and timestamps agreeing with the
container, and decord's first frame and one frame in the middle equal to PyAV's.

Times everywhere are seconds from the first displayed frame of the recording: the first frame's
PTS (:attr:`VideoInfo.start_time`, e.g. 36001.4 s for a DVB capture) is subtracted. Frames are
RGB uint8, upright (rotation applied) and display-shaped (sample aspect ratio applied).

Heavy imports (av, decord, cv2) happen inside functions.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import stat
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tvcaption.errors import VideoError

log = logging.getLogger("tvcaption.video")

READERS = ("decord", "pyav")

# Containers whose demuxer has a real frame index, where decord's random access can be right.
_INDEXED_CONTAINERS = ("mov", "mp4", "matroska", "webm", "mxf")
_SCAN_PACKETS = 120  # packets read at the start of a file to check timestamps / frame rate
_SEEK_GAP = 2.0  # seconds: decode forward up to this far, seek beyond it
_REORDER_DEPTH = 16  # most frames a B-frame can lag behind its reference in decode order
_REORDER = 4  # frames of look-ahead to repair out-of-order timestamps (AVI packed B-frames)
_GATE_MAX_WAIT = 300  # frames to wait for a keyframe after a seek before accepting anything
_EPS = 1e-6  # seconds: tolerance when comparing a requested time with a frame time
_MAX_DECODE_ERRORS = 200  # corrupt packets skipped before giving up on a file
_CHUNK = 32  # decord frames per batch


@dataclass(frozen=True)
class VideoInfo:
    path: str
    container: str  # FFmpeg demuxer name, e.g. "mpegts", "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str  # e.g. "h264", "mpeg2video"
    width: int  # display size: after rotation and sample aspect ratio
    height: int
    fps: float  # average frame rate
    frame_count: int  # exact where the container indexes frames (MP4, AVI), else duration * fps
    duration: float  # seconds from the first frame to the end of the last one
    start_time: float  # PTS of the first displayed video frame in seconds (0 for most MP4s)
    rotation: int  # degrees clockwise to turn the coded picture upright (0, 90, 180, 270)
    sample_aspect_ratio: float  # 1.0 for square pixels
    variable_frame_rate: bool
    reader: str  # "decord" or "pyav": the reader that is correct for this file


# ------------------------------------------------------------------ public API


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read a recording's stream properties and choose the reader that is right for it.

    Raises :class:`VideoError` (one line naming the file) for a missing, empty, unreadable or
    video-less file.
    """
    p = _check_file(path)
    av = _av()
    container = _open(p)
    try:
        stream = _pick_stream(container)
        if stream is None:
            kinds = sorted({s.type for s in container.streams}) or ["no streams"]
            raise VideoError(f"{p}: no video stream (only {', '.join(kinds)}); pass a recording with video")
        tb = stream.time_base
        scan = _scan_start(container, stream)
        if scan.first is None:
            raise VideoError(f"{p}: no video frame could be decoded{scan.why}; the file is truncated or corrupt")
        first_pts, first = scan.first_pts, scan.first
        start_time = float(first_pts * tb)
        rotation = _rotation_cw(first)
        sar = _sample_aspect_ratio(stream, first)
        coded_w, coded_h = first.width, first.height
        display_w = max(1, round(coded_w * sar))
        width, height = (coded_h, display_w) if rotation in (90, 270) else (display_w, coded_h)

        avg = _rate(stream.average_rate)
        guess = _rate(stream.guessed_rate)
        pkt_fps, pkt_vfr = _packet_rate(scan.packet_pts, tb)
        fmt = container.format.name
        indexed_count = stream.frames if stream.frames and stream.frames > 0 else 0
        # avg_frame_rate is exact where the container indexes every frame; in a stream (MPEG-TS)
        # it is FFmpeg's estimate over its first packets, so there the packet check decides
        exact_avg = bool(indexed_count) or _indexed_container(fmt)
        vfr = pkt_vfr or bool(exact_avg and avg and guess and abs(avg / guess - 1.0) > 0.01)
        if exact_avg:
            fps = avg or guess or pkt_fps or 25.0
        elif vfr:
            fps = pkt_fps or avg or guess or 25.0
        elif avg and guess and abs(guess / avg - 2.0) < 0.1:
            fps = avg  # field rate reported for interlaced video
        else:
            fps = guess or avg or pkt_fps or 25.0
        duration = _duration(container, stream, start_time)
        if duration is None or duration <= 0:
            duration = _duration_by_scan(p, start_time, fps)
        frame_count = indexed_count or max(1, round(duration * fps))
        codec = stream.codec_context.name
        stream_start = float(stream.start_time * tb) if stream.start_time is not None else start_time
        first_rgb = first.to_ndarray(format="rgb24")
    except VideoError:
        raise
    except av.error.FFmpegError as exc:
        raise VideoError(f"{p}: cannot read the video stream ({_reason(exc)}); the file may be corrupt") from None
    finally:
        container.close()

    info = VideoInfo(
        path=os.fspath(path), container=fmt, codec=codec, width=int(width), height=int(height),
        fps=float(fps), frame_count=int(frame_count), duration=float(duration), start_time=start_time,
        rotation=rotation, sample_aspect_ratio=float(sar), variable_frame_rate=bool(vfr), reader="pyav",
    )
    reader, why = _choose_reader(info, stream_start, indexed_count, first_rgb)
    log.debug("%s: reader %s (%s)", p, reader, why)
    return replace(info, reader=reader)


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
            return _decord_read(info, req, out_w, out_h)
        except VideoError:
            raise
        except Exception as exc:  # decord failed on this file after all: PyAV is always right
            log.warning("%s: decord failed (%s); reading with PyAV", info.path, exc)
    return _pyav_read(info, req, out_w, out_h)


def iter_frames(path_or_info: str | os.PathLike | VideoInfo, size: int | None = None,
                step: int = 1, bgr: bool = False, scaler: str = "swscale") -> Iterator[tuple[float, np.ndarray]]:
    """Every ``step``-th frame in display order with its time in seconds from the first frame.

    One sequential decoding pass (PyAV, threaded); frames are RGB uint8 (BGR with ``bgr``, what
    OpenCV and PySceneDetect's detectors take), upright and display-shaped, shorter side resized
    to ``size`` when given (``scaler``: see :func:`_pyav_converter`).
    """
    if step < 1:
        raise ValueError("iter_frames: step must be >= 1")
    info = _info(path_or_info)
    out_w, out_h = output_size(info, size)
    convert = _pyav_converter(info, out_w, out_h, "bgr24" if bgr else "rgb24", scaler)
    with _PyavCursor(info) as cursor:
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


def output_size(info: VideoInfo, size: int | None = None) -> tuple[int, int]:
    """(width, height) of the frames returned for ``size`` (shorter side), upright display shape."""
    w, h = info.width, info.height
    if size is None or size <= 0:
        return w, h
    if w <= h:
        return int(size), max(1, round(h * size / w))
    return max(1, round(w * size / h)), int(size)


# ------------------------------------------------------------------ opening and probing


def _av():
    import av
    import av.error  # noqa: F401

    return av


def _check_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        if p.is_symlink():
            raise VideoError(f"{p}: broken symbolic link (to {os.readlink(p)}); fix or remove the link")
        raise VideoError(f"{p}: file not found; check the path")
    if p.is_dir():
        raise VideoError(f"{p}: is a folder, not a video file; pass a recording")
    try:
        st = p.stat()
    except OSError as exc:
        raise VideoError(f"{p}: cannot read the file ({exc.strerror}); check its permissions") from None
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block the reader forever, a device never ends
        raise VideoError(f"{p}: not a regular file ({_file_kind(st.st_mode)}); pass a recording file")
    size = st.st_size
    if size == 0:
        raise VideoError(f"{p}: file is empty (0 bytes); the recording or copy did not complete")
    if not os.access(p, os.R_OK):
        raise VideoError(f"{p}: permission denied; make the file readable")
    return p


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "a special file"


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


def _open(p: Path):
    av = _av()
    try:
        return av.open(str(p))
    except av.error.FileNotFoundError:
        raise VideoError(f"{p}: file not found; check the path") from None
    except av.error.PermissionError:
        raise VideoError(f"{p}: permission denied; make the file readable") from None
    except av.error.FFmpegError as exc:
        raise VideoError(f"{p}: not a readable video ({_reason(exc)}); check that it is a complete "
                         "video file (MP4, MKV, AVI, MXF, MPEG-TS ...)") from None
    except OSError as exc:
        raise VideoError(f"{p}: cannot open ({_reason(exc)}); check the file") from None


def _pick_stream(container):
    """The main video stream: not cover art; the largest picture; the first of equals."""
    av = _av()
    attached = int(av.stream.Disposition.attached_pic)
    cands = [s for s in container.streams.video if not (int(s.disposition) & attached)]
    if not cands:
        return None
    return max(cands, key=lambda s: ((s.codec_context.width or 0) * (s.codec_context.height or 0), -s.index))


def _rate(value) -> float | None:
    try:
        v = float(value) if value else 0.0
    except (TypeError, ZeroDivisionError):
        return None
    return v if 0.5 < v < 1000.0 else None


def _rotation_cw(frame) -> int:
    """Clockwise degrees to turn the coded picture upright (FFmpeg's display matrix is CCW)."""
    try:
        ccw = frame.rotation
    except Exception:
        return 0
    if not ccw or not math.isfinite(ccw):
        return 0
    return int(round(-float(ccw) / 90.0)) % 4 * 90


def _sample_aspect_ratio(stream, frame) -> float:
    for value in (stream.sample_aspect_ratio, getattr(frame, "sample_aspect_ratio", None),
                  stream.codec_context.sample_aspect_ratio):
        try:
            v = float(value) if value else 0.0
        except (TypeError, ZeroDivisionError):
            v = 0.0
        if 0.1 < v < 10.0:
            return v
    return 1.0


def _packet_rate(pts: list[int], tb) -> tuple[float | None, bool]:
    """Average rate and a VFR flag from the presentation timestamps of the first packets."""
    if len(pts) < 3:
        return None, False
    # Packets arrive in decode order: with B-frames the last few PTS of the sample skip ahead,
    # and open-GOP leading B-frames come before the keyframe that starts the sample.
    ts = np.unique(np.asarray(pts, dtype=np.int64))
    ts = ts[ts >= pts[0]]
    if len(ts) > 2 * _REORDER_DEPTH:
        ts = ts[:-_REORDER_DEPTH]
    if len(ts) < 3:
        return None, False
    diffs = np.diff(ts).astype(np.float64)
    med = float(np.median(diffs))
    span = float((ts[-1] - ts[0]) * tb)
    fps = (len(ts) - 1) / span if span > 0 else None
    vfr = bool(med > 0 and np.any(np.abs(diffs - med) > 0.25 * med))
    return fps, vfr


def _duration(container, stream, start_time: float) -> float | None:
    tb = stream.time_base
    s_start = float(stream.start_time * tb) if stream.start_time is not None else None
    if stream.duration and stream.duration > 0 and s_start is not None:
        return s_start + float(stream.duration * tb) - start_time
    if container.duration and container.duration > 0:
        c_start = (container.start_time or 0) / 1_000_000
        return c_start + container.duration / 1_000_000 - start_time
    return None


def _duration_by_scan(p: Path, start_time: float, fps: float) -> float:
    """Duration from the last packet's timestamp (files whose headers say nothing)."""
    container = _open(p)
    try:
        stream = _pick_stream(container)
        tb = stream.time_base
        last, dur = None, 0
        for packet in container.demux(stream):
            if packet.pts is not None and (last is None or packet.pts > last):
                last, dur = packet.pts, packet.duration or 0
        if last is None:
            return 1.0 / fps
        return max(float(last * tb) - start_time + (float(dur * tb) if dur else 1.0 / fps), 1.0 / fps)
    finally:
        container.close()


@dataclass
class _Scan:
    first: Any = None
    first_pts: int = 0
    packet_pts: list = None  # type: ignore[assignment]
    why: str = ""


def _scan_start(container, stream) -> _Scan:
    """First displayed frame (through the same gate and reorder as every read) + first packet PTS."""
    av = _av()
    scan = _Scan(packet_pts=[])
    frames = _ordered(_gated(_decoded(container, stream, scan.packet_pts, _SCAN_PACKETS)), _fallback_step(stream))
    try:
        for pts, frame in frames:
            scan.first, scan.first_pts = frame, pts
            break
    except av.error.FFmpegError as exc:
        scan.why = f" ({_reason(exc)})"
    finally:
        frames.close()
    # Keep reading packet timestamps (no decoding) for the frame-rate check.
    if scan.first is not None and len(scan.packet_pts) < _SCAN_PACKETS:
        try:
            for packet in container.demux(stream):
                if packet.pts is not None and (scan.packet_pts or packet.is_keyframe):
                    scan.packet_pts.append(packet.pts)
                if len(scan.packet_pts) >= _SCAN_PACKETS:
                    break
        except av.error.FFmpegError:
            pass
    return scan


def _fallback_step(stream) -> int:
    """PTS step of one frame at the nominal rate, for frames without a timestamp."""
    rate = _rate(stream.guessed_rate) or _rate(stream.average_rate) or 25.0
    return max(1, round(1.0 / (rate * float(stream.time_base))))


# ------------------------------------------------------------------ decoding primitives


def _decoded(container, stream, packet_pts: list | None = None, keep: int = 0):
    """Frames in decoder output order; corrupt packets are skipped (broadcast captures have them)."""
    av = _av()
    errors = 0
    for packet in container.demux(stream):
        if packet_pts is not None and packet.pts is not None and len(packet_pts) < keep:
            if packet_pts or packet.is_keyframe:  # from the first keyframe on (a capture can start mid-GOP)
                packet_pts.append(packet.pts)
        try:
            frames = packet.decode()
        except av.error.EOFError:
            return
        except av.error.FFmpegError:
            errors += 1
            if errors > _MAX_DECODE_ERRORS:
                raise
            continue
        yield from frames


def _gated(frames):
    """Drop what a decoder outputs before the first keyframe, and open-GOP leading frames.

    After a seek (or in a capture that starts mid-GOP) the first frames can be references-missing
    garbage; they precede the first keyframe in decode order, or have a PTS before it.
    """
    key_pts = None
    waited = 0
    for frame in frames:
        if key_pts is None:
            if frame.key_frame or int(frame.pict_type) == 1 or waited >= _GATE_MAX_WAIT:
                key_pts = frame.pts if frame.pts is not None else -(1 << 62)
            else:
                waited += 1
                continue
        if frame.pts is not None and frame.pts < key_pts:
            continue
        yield frame


def _ordered(frames, step: int):
    """(pts, frame) with increasing PTS: each frame gets the smallest PTS label not yet used
    among a small look-ahead window.

    Decoders output frames in display order, but some files label them out of order (AVI with
    packed B-frames: 1,2,3,5,4,6 ...) or not at all; this keeps times monotonic and exact.
    """
    window: list = []  # frames waiting
    labels: list[int] = []  # heap of PTS labels waiting
    last = None
    try:
        for frame in frames:
            window.append(frame)
            if frame.pts is not None:
                heapq.heappush(labels, frame.pts)
            if len(window) > _REORDER:
                last = _label(labels, last, step)
                yield last, window.pop(0)
        while window:
            last = _label(labels, last, step)
            yield last, window.pop(0)
    finally:
        frames.close()


def _label(labels: list[int], last: int | None, step: int) -> int:
    while labels and last is not None and labels[0] <= last:
        heapq.heappop(labels)  # a duplicate or late label: drop it
    if labels:
        return heapq.heappop(labels)
    return (last + step) if last is not None else 0


class _PyavCursor:
    """A PyAV decoding position over one recording, with keyframe seeking and back-off."""

    def __init__(self, info: VideoInfo, threads: bool = True):
        self.info = info
        self.threads = threads
        self.container = None
        self.stream = None
        self._it = None
        self.pending: tuple[float, Any] | None = None
        self._open()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _open(self):
        self.close()
        p = Path(self.info.path)
        self.container = _open(p)
        self.stream = _pick_stream(self.container)
        if self.stream is None:
            self.close()
            raise VideoError(f"{p}: no video stream; pass a recording with video")
        if self.threads:
            self.stream.thread_type = "AUTO"
        self.tb = self.stream.time_base
        self.tbf = float(self.tb)
        self.first_pts = round(self.info.start_time / self.tbf)
        self.step = _fallback_step(self.stream)
        self._restart_iter()

    def _restart_iter(self):
        if self._it is not None:
            self._it.close()
        self._it = _ordered(_gated(_decoded(self.container, self.stream)), self.step)
        self.pending = None

    def close(self):
        if self._it is not None:
            self._it.close()
            self._it = None
        if self.container is not None:
            self.container.close()
            self.container = None

    def frames(self) -> Iterator[tuple[float, Any]]:
        while (item := self.next()) is not None:
            yield item

    def next(self) -> tuple[float, Any] | None:
        if self.pending is not None:
            item, self.pending = self.pending, None
            return item
        av = _av()
        try:
            pts, frame = next(self._it)
        except StopIteration:
            return None
        except av.error.FFmpegError as exc:
            raise VideoError(f"{self.info.path}: decoding failed ({_reason(exc)}); the file may be corrupt") from None
        return (pts - self.first_pts) * self.tbf, frame

    def push_back(self, item):
        self.pending = item

    def seek(self, t: float) -> bool:
        """Position just before ``t``: the first frame delivered afterwards is at or before t."""
        av = _av()
        for back in (0.0, 1.0, 4.0, 16.0, 64.0):
            target = t - back
            if target <= 0:
                break
            try:
                self.container.seek(self.first_pts + int(target / self.tbf), stream=self.stream, backward=True)
            except av.error.FFmpegError:
                break
            self._restart_iter()
            item = self.next()
            if item is not None and item[0] <= t + _EPS:
                self.push_back(item)
                return True
        self._open()  # from the beginning: always right
        return False


def _pyav_read(info: VideoInfo, req: np.ndarray, out_w: int, out_h: int) -> tuple[np.ndarray, np.ndarray]:
    convert = _pyav_converter(info, out_w, out_h)
    frames, stamps = _pyav_pick(info, req, convert)
    return np.stack(frames), np.asarray(stamps, dtype=np.float64)


def _pyav_pick(info: VideoInfo, req: np.ndarray, convert: Callable[[Any], np.ndarray],
               threads: bool = True) -> tuple[list[np.ndarray], list[float]]:
    """For each requested time (any order), convert(frame displayed then) and its time."""
    order = np.argsort(req, kind="stable")
    out: list[Any] = [None] * len(req)
    stamps = [0.0] * len(req)
    converted: dict[float, np.ndarray] = {}
    with _PyavCursor(info, threads=threads) as cur_pos:
        current: tuple[float, Any] | None = None  # last frame at or before the previous target
        for j in order:
            target = float(req[j])
            here = cur_pos.pending[0] if cur_pos.pending is not None else (current[0] if current else 0.0)
            if target - here > _SEEK_GAP:
                cur_pos.seek(target)
                current = None
            while (item := cur_pos.next()) is not None:
                if item[0] <= target + _EPS:
                    current = item
                else:
                    cur_pos.push_back(item)
                    break
            if current is None:  # before the first frame
                current = cur_pos.pending
                if current is None:
                    raise VideoError(f"{info.path}: no video frame could be decoded; the file is truncated or corrupt")
            t, frame = current
            if t not in converted:
                converted[t] = convert(frame)
            out[j], stamps[j] = converted[t], t
    return out, stamps


def _pyav_converter(info: VideoInfo, out_w: int, out_h: int, fmt: str = "rgb24",
                    scaler: str = "swscale") -> Callable[[Any], np.ndarray]:
    """av.VideoFrame -> upright, display-shaped RGB (or ``fmt="bgr24"``) at (out_w, out_h).

    ``scaler="swscale"`` scales in FFmpeg (bilinear, filter widened when shrinking: no aliasing);
    ``"cv2"`` converts at the coded size and shrinks with ``cv2.resize(INTER_LINEAR)``, which is
    what PySceneDetect's SceneManager does: on the 10-minute benchmark recording the adaptive
    detector then finds exactly the CLI's 173 cuts (swscale bilinear: 177, 4 extra).
    """
    from av.video.reformatter import VideoReformatter

    k = (-info.rotation // 90) % 4  # np.rot90 turns counter-clockwise
    pre_w, pre_h = (out_h, out_w) if k % 2 else (out_w, out_h)
    # One reformatter per converter keeps its swscale context: frame.reformat() builds a new one
    # (filters and all) on every call, 7x slower at 720x576 -> 256x205 (5.5 vs 0.8 ms a frame).
    reformatter = VideoReformatter()

    def convert(frame) -> np.ndarray:
        if (frame.width, frame.height) == (pre_w, pre_h):
            img = reformatter.reformat(frame, format=fmt).to_ndarray()
        elif scaler == "cv2":
            import cv2

            img = cv2.resize(reformatter.reformat(frame, format=fmt).to_ndarray(), (pre_w, pre_h),
                             interpolation=cv2.INTER_LINEAR)
        else:
            img = reformatter.reformat(frame, width=pre_w, height=pre_h, format=fmt,
                                       interpolation="BILINEAR").to_ndarray()
        if k:
            img = np.rot90(img, k)
        return np.ascontiguousarray(img)

    return convert


# ------------------------------------------------------------------ decord


_DECORD_LOCK = threading.Lock()
_DECORD_IDLE: dict[tuple, Any] = {}  # readers not in use, by (path, size, mtime)
_DECORD_KEEP = 2


def _decord_key(path: str) -> tuple:
    st = os.stat(path)
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns)


def _decord_take(path: str):
    """A decord VideoReader for this file, owned by the caller until _decord_give_back."""
    key = _decord_key(path)
    with _DECORD_LOCK:
        vr = _DECORD_IDLE.pop(key, None)
    if vr is None:
        import decord

        vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=0)
    return key, vr


def _decord_give_back(key: tuple, vr) -> None:
    with _DECORD_LOCK:
        _DECORD_IDLE[key] = vr
        while len(_DECORD_IDLE) > _DECORD_KEEP:
            _DECORD_IDLE.pop(next(iter(_DECORD_IDLE)))


def _decord_times(vr) -> np.ndarray:
    ts = np.asarray(vr.get_frame_timestamp(np.arange(len(vr))), dtype=np.float64)
    return ts.reshape(len(vr), 2)


def _decord_read(info: VideoInfo, req: np.ndarray, out_w: int, out_h: int) -> tuple[np.ndarray, np.ndarray]:
    key, vr = _decord_take(info.path)
    try:
        rel = _decord_times(vr)[:, 0]
        rel = rel - rel[0]
        idx = np.clip(np.searchsorted(rel, req + _EPS, side="right") - 1, 0, len(rel) - 1)
        uniq, inverse = np.unique(idx, return_inverse=True)
        done: list[np.ndarray] = []
        for lo in range(0, len(uniq), _CHUNK):
            batch = vr.get_batch([int(i) for i in uniq[lo:lo + _CHUNK]]).asnumpy()
            done.extend(_fit(img, info, out_w, out_h) for img in batch)
    finally:
        _decord_give_back(key, vr)
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


def _choose_reader(info: VideoInfo, stream_start: float, indexed_count: int,
                   first_rgb: np.ndarray) -> tuple[str, str]:
    """decord where cheap checks show it is right for this file, else PyAV (with the reason)."""
    if not _indexed_container(info.container):
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
        key, vr = _decord_take(info.path)
    except Exception as exc:
        return "pyav", f"decord cannot open it ({_reason(exc)})"
    try:
        why = _decord_disagrees(vr, info, stream_start, indexed_count, first_rgb)
    except Exception as exc:
        why = f"decord failed ({_reason(exc)})"
    if why:
        return "pyav", why
    _decord_give_back(key, vr)  # keep it open for read_frames
    return "decord", "indexed container, constant rate, decord agrees with FFmpeg"


def _decord_disagrees(vr, info: VideoInfo, stream_start: float, indexed_count: int,
                      first_rgb: np.ndarray) -> str:
    """Why decord is wrong for this file ("" when its count, timestamps and frames check out)."""
    n = len(vr)
    expected = indexed_count or info.duration * info.fps
    if n < 1 or abs(n - expected) > max(2.0, 0.01 * expected):
        return f"decord counts {n} frames, the container {expected:.0f}"
    ts = _decord_times(vr)
    starts = ts[:, 0]
    frame_dur = 1.0 / info.fps
    if not np.all(np.isfinite(ts)) or (n > 1 and np.any(np.diff(starts) <= 0)):
        return "decord's timestamps are not increasing"
    if abs(starts[0] - (info.start_time - stream_start)) > frame_dur / 2:
        return f"decord's first timestamp {starts[0]:.3f} s is wrong"
    if abs((ts[-1, 1] - starts[0]) - info.duration) > 1.5 * frame_dur:
        return "decord's timestamps do not span the duration"
    first = vr[0].asnumpy()
    if first.shape != first_rgb.shape or _mad(first, first_rgb) > 3.0:
        return "decord's first frame differs from FFmpeg's"
    if n > 2:  # one random access: decord's frame in the middle vs FFmpeg's frame at that time
        mid = n // 2
        t_mid = float(starts[mid] - starts[0])
        ref, ref_t = _pyav_pick(info, np.array([t_mid]), lambda f: f.to_ndarray(format="rgb24"))
        got = vr.get_batch([mid]).asnumpy()[0]
        if abs(ref_t[0] - t_mid) > frame_dur / 2 or ref[0].shape != got.shape or _mad(ref[0], got) > 3.0:
            return f"decord's frame {mid} differs from FFmpeg's frame at {t_mid:.3f} s"
    return ""


def _indexed_container(fmt: str) -> bool:
    return any(name in _INDEXED_CONTAINERS for name in fmt.split(","))


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def _info(path_or_info: str | os.PathLike | VideoInfo) -> VideoInfo:
    return path_or_info if isinstance(path_or_info, VideoInfo) else probe(path_or_info)


__all__ = ["VideoInfo", "probe", "read_frames", "iter_frames", "sample_times", "output_size", "READERS"]
