"""The PyAV (FFmpeg) engine: opening a recording, decoding in display order, seeking, converting.

It is right for every file: :func:`tvcaption.video.iter_frames` always decodes with it, and
:func:`tvcaption.video.read_frames` uses it wherever decord is not proven right.

* :func:`open_container`, :func:`pick_stream` - open a file (one-line :class:`VideoError` on
  failure) and find its main video stream; :func:`rate`, :func:`fallback_step`,
  :func:`indexed_container` - what FFmpeg's rates and demuxer names mean;
* :func:`first_frame` - the first displayed frame, through the same gate and reorder as every
  read (what :func:`tvcaption.video.probe` takes the start time, rotation and size from);
* :class:`PyavCursor` - a decoding position with keyframe seeking and back-off;
* :func:`pick_frames` / :func:`read` - the frames shown at given times;
* :func:`converter` - decoded picture to upright, display-shaped RGB/BGR, one swscale context
  per converter.

Corrupt packets are skipped (broadcast captures have them); decoder output before the first
keyframe and open-GOP leading frames are dropped; out-of-order timestamps (AVI with packed
B-frames) are repaired with a small look-ahead. Heavy imports (av, cv2) happen inside functions.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tvcaption.errors import VideoError

if TYPE_CHECKING:
    from tvcaption.video.info import VideoInfo

SEEK_GAP = 2.0  # seconds: decode forward up to this far, seek beyond it
EPS = 1e-6  # seconds: tolerance when comparing a requested time with a frame time
_REORDER = 4  # frames of look-ahead to repair out-of-order timestamps (AVI packed B-frames)
_GATE_MAX_WAIT = 300  # frames to wait for a keyframe after a seek before accepting anything
_MAX_DECODE_ERRORS = 200  # corrupt packets skipped before giving up on a file
# FFmpeg demuxers with a real frame index: avg_frame_rate is exact, decord's random access can be right
INDEXED_CONTAINERS = ("mov", "mp4", "matroska", "webm", "mxf")


def _av():
    import av
    import av.error  # noqa: F401

    return av


def reason(exc: BaseException) -> str:
    """An exception's message on one line."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


def open_container(p: Path):
    """``av.open`` with every failure turned into a one-line :class:`VideoError`."""
    av = _av()
    try:
        return av.open(str(p))
    except av.error.FileNotFoundError:
        raise VideoError(f"{p}: file not found; check the path") from None
    except av.error.PermissionError:
        raise VideoError(f"{p}: permission denied; make the file readable") from None
    except av.error.FFmpegError as exc:
        raise VideoError(f"{p}: not a readable video ({reason(exc)}); check that it is a complete "
                         "video file (MP4, MKV, AVI, MXF, MPEG-TS ...)") from None
    except OSError as exc:
        raise VideoError(f"{p}: cannot open ({reason(exc)}); check the file") from None


def pick_stream(container):
    """The main video stream: not cover art; the largest picture; the first of equals."""
    av = _av()
    attached = int(av.stream.Disposition.attached_pic)
    cands = [s for s in container.streams.video if not (int(s.disposition) & attached)]
    if not cands:
        return None
    return max(cands, key=lambda s: ((s.codec_context.width or 0) * (s.codec_context.height or 0), -s.index))


def indexed_container(fmt: str) -> bool:
    """Whether an FFmpeg demuxer name (``"mov,mp4,m4a,..."``) is one of :data:`INDEXED_CONTAINERS`."""
    return any(name in INDEXED_CONTAINERS for name in fmt.split(","))


def rate(value) -> float | None:
    """A frame rate as a float, or None when missing or implausible."""
    try:
        v = float(value) if value else 0.0
    except (TypeError, ZeroDivisionError):
        return None
    return v if 0.5 < v < 1000.0 else None


def fallback_step(stream) -> int:
    """PTS step of one frame at the nominal rate, for frames without a timestamp."""
    nominal = rate(stream.guessed_rate) or rate(stream.average_rate) or 25.0
    return max(1, round(1.0 / (nominal * float(stream.time_base))))


# ------------------------------------------------------------------ decoding primitives


class KeySeen:
    """What :func:`_decoded` tells :func:`_gated`: the PTS of the first keyframe packet the
    decoder was given (None before one)."""

    pts: int | None = None


def _decoded(container, stream, packet_pts: list | None = None, keep: int = 0, key: KeySeen | None = None):
    """Frames in decoder output order; corrupt packets are skipped (broadcast captures have them)."""
    av = _av()
    errors = 0
    for packet in container.demux(stream):
        if packet_pts is not None and packet.pts is not None and len(packet_pts) < keep:
            if packet_pts or packet.is_keyframe:  # from the first keyframe on (a capture can start mid-GOP)
                packet_pts.append(packet.pts)
        if key is not None and key.pts is None and packet.is_keyframe and packet.pts is not None:
            key.pts = packet.pts
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


def _gate(container, stream, packet_pts: list | None = None, keep: int = 0):
    """:func:`_gated` frames of :func:`_decoded`."""
    key = KeySeen()
    return _gated(_decoded(container, stream, packet_pts, keep, key), key)


def _gated(frames, key: KeySeen | None = None):
    """Drop what a decoder outputs before the first keyframe, and open-GOP leading frames.

    After a seek (or in a capture that starts mid-GOP) the first frames can be references-missing
    garbage; they precede the first keyframe in decode order, or have a PTS before it. A frame
    that is not a keyframe itself but comes after a keyframe packet went into the decoder
    (``key``) is whole: an MP4 cut without re-encoding starts with an edit list, and FFmpeg
    decodes the keyframe before the cut but does not output it (its packets are marked discard),
    so the first frame shown is a P or B frame at 0 s.
    """
    key_pts = None
    waited = 0
    for frame in frames:
        if key_pts is None:
            if frame.key_frame or int(frame.pict_type) == 1 or waited >= _GATE_MAX_WAIT:
                key_pts = frame.pts if frame.pts is not None else -(1 << 62)
            elif key is not None and key.pts is not None:
                key_pts = key.pts
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


def first_frame(container, stream, packet_pts: list | None = None, keep: int = 0) -> tuple[int, Any] | None:
    """(PTS label, frame) of the first displayed frame, exactly as every read labels it; None if
    nothing decodes. Decodes only the few frames the reorder look-ahead needs; the PTS of the
    packets demuxed meanwhile (from the first keyframe, at most ``keep``) go to ``packet_pts``.
    FFmpeg errors beyond the skipped corrupt packets propagate.
    """
    frames = _ordered(_gate(container, stream, packet_pts, keep), fallback_step(stream))
    try:
        return next(frames, None)
    finally:
        frames.close()


class PyavCursor:
    """A PyAV decoding position over one recording, with keyframe seeking and back-off.

    Times are seconds from the recording's first frame (:attr:`VideoInfo.start_time`).
    """

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
        self.container = open_container(p)
        self.stream = pick_stream(self.container)
        if self.stream is None:
            self.close()
            raise VideoError(f"{p}: no video stream; pass a recording with video")
        if self.threads:
            self.stream.thread_type = "AUTO"
        self.tb = self.stream.time_base
        self.tbf = float(self.tb)
        self.first_pts = round(self.info.start_time / self.tbf)
        self.step = fallback_step(self.stream)
        self._restart_iter()

    def _restart_iter(self):
        if self._it is not None:
            self._it.close()
        self._it = _ordered(_gate(self.container, self.stream), self.step)
        self.pending = None

    def close(self):
        if self._it is not None:
            self._it.close()
            self._it = None
        if self.container is not None:
            self.container.close()
            self.container = None

    def frames(self) -> Iterator[tuple[float, Any]]:
        """(time, decoded picture) of every frame from here on, in display order."""
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
            raise VideoError(f"{self.info.path}: decoding failed ({reason(exc)}); the file may be corrupt") from None
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
            if item is not None and item[0] <= t + EPS:
                self.push_back(item)
                return True
        self._open()  # from the beginning: always right
        return False


# ------------------------------------------------------------------ frames at given times


def read(info: VideoInfo, req: np.ndarray, out_w: int, out_h: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames shown at the times ``req`` (any order) at (out_w, out_h), and their timestamps."""
    convert = converter(info, out_w, out_h)
    frames, stamps = pick_frames(info, req, convert)
    return np.stack(frames), np.asarray(stamps, dtype=np.float64)


def pick_frames(info: VideoInfo, req: np.ndarray, convert: Callable[[Any], np.ndarray],
                threads: bool = True) -> tuple[list[np.ndarray], list[float]]:
    """For each requested time (any order), convert(frame displayed then) and its time."""
    order = np.argsort(req, kind="stable")
    out: list[Any] = [None] * len(req)
    stamps = [0.0] * len(req)
    converted: dict[float, np.ndarray] = {}
    with PyavCursor(info, threads=threads) as cur_pos:
        current: tuple[float, Any] | None = None  # last frame at or before the previous target
        for j in order:
            target = float(req[j])
            here = cur_pos.pending[0] if cur_pos.pending is not None else (current[0] if current else 0.0)
            if target - here > SEEK_GAP:
                cur_pos.seek(target)
                current = None
            while (item := cur_pos.next()) is not None:
                if item[0] <= target + EPS:
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


def coded_converter(info: VideoInfo) -> Callable[[Any], np.ndarray]:
    """Like :func:`converter`, at the first picture's coded size, upright (no sample aspect ratio
    applied; later pictures of another size are scaled to it): frames for the CNN alone, which
    squashes every frame to 224x224 anyway (:mod:`tvcaption.stream`)."""
    made: list[Callable[[Any], np.ndarray]] = []

    def convert(frame) -> np.ndarray:
        if not made:
            size = (frame.width, frame.height)
            made.append(converter(info, *(size[::-1] if info.rotation in (90, 270) else size)))
        return made[0](frame)

    return convert


def _one_thread() -> dict:
    """swscale on the calling thread: PyAV 17 slices every conversion across threads by default,
    which on a CPU whose cores already decode and run the CNN only adds waiting (SD to BGR with
    the detector's resize: 0.44-0.49 instead of 0.58 ms a frame, and less CPU; the same pixels).
    Older PyAV converts on the calling thread anyway and has no ``threads`` argument."""
    import av

    return {"threads": 1} if int(av.__version__.split(".")[0]) >= 17 else {}


def converter(info: VideoInfo, out_w: int, out_h: int, fmt: str = "rgb24",
              scaler: str = "swscale") -> Callable[[Any], np.ndarray]:
    """av.VideoFrame -> upright, display-shaped RGB (or ``fmt="bgr24"``) at (out_w, out_h).

    ``scaler="swscale"`` scales in FFmpeg (bilinear, filter widened when shrinking: no aliasing);
    ``"cv2"`` converts at the coded size and shrinks with ``cv2.resize(INTER_LINEAR)``, which is
    what PySceneDetect's SceneManager does: on the 10-minute benchmark recording the adaptive
    detector then finds exactly the CLI's 173 cuts (swscale bilinear: 197, 29 not the CLI's). Any
    other name is a swscale interpolation done in the same step as the conversion: ``"POINT"``
    (the nearest pixel) is what the scene detector's small frame uses, since on every frame of the
    broadcast and the sample clips it lies 0.8 grey levels on average from the ``cv2`` frame
    (cv2's INTER_LINEAR, shrinking SD by 3, reads almost only whole pixels), gives the same 207
    scene starts, and costs 0.15-0.6 of it (``bench/detector_frame.py``).
    """
    from av.video.reformatter import VideoReformatter

    k = (-info.rotation // 90) % 4  # np.rot90 turns counter-clockwise
    pre_w, pre_h = (out_h, out_w) if k % 2 else (out_w, out_h)
    # One reformatter per converter keeps its swscale context: frame.reformat() builds a new one
    # (filters and all) on every call, 7x slower at 720x576 -> 256x205 (5.5 vs 0.8 ms a frame).
    reformatter = VideoReformatter()
    one = _one_thread()
    interpolation = "BILINEAR" if scaler == "swscale" else scaler

    def convert(frame) -> np.ndarray:
        if (frame.width, frame.height) == (pre_w, pre_h):
            img = reformatter.reformat(frame, format=fmt, **one).to_ndarray()
        elif scaler == "cv2":
            import cv2

            img = cv2.resize(reformatter.reformat(frame, format=fmt, **one).to_ndarray(), (pre_w, pre_h),
                             interpolation=cv2.INTER_LINEAR)
        else:
            img = reformatter.reformat(frame, width=pre_w, height=pre_h, format=fmt,
                                       interpolation=interpolation, **one).to_ndarray()
        if k:
            img = np.rot90(img, k)
        return np.ascontiguousarray(img)

    return convert


__all__ = ["PyavCursor", "converter", "coded_converter", "pick_frames", "read", "first_frame", "open_container", "pick_stream",
           "rate", "fallback_step", "reason", "indexed_container", "INDEXED_CONTAINERS", "SEEK_GAP", "EPS"]
