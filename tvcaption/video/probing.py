"""Probing: a recording's stream properties from its container, its first packets and first frame.

:func:`probe` opens the file once and reads

* the container and stream headers (format, codec, rates, duration, frame count, aspect ratio),
* the timestamps of the first :data:`SCAN_PACKETS` packets (demuxed, not decoded) for the
  frame-rate and variable-frame-rate checks, and
* the first displayed frame, decoded through the same keyframe gate and reorder as every read
  (a handful of frames): its timestamp is time 0 of every read, it carries the rotation, and a
  file where nothing decodes fails here, in one line.

Only when the headers give no duration at all does it read the timestamps of every packet
(still no decoding). It does not choose a reader, open decord or convert any picture:
:attr:`VideoInfo.reader` is chosen where frames are first read at given times.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tvcaption.errors import VideoError
from tvcaption.video.info import VideoInfo
from tvcaption.video.pyav import first_frame, indexed_container, open_container, pick_stream, rate, reason

SCAN_PACKETS = 120  # packets read at the start of a file to check timestamps / frame rate
_REORDER_DEPTH = 16  # most frames a B-frame can lag behind its reference in decode order


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read a recording's stream properties.

    Raises :class:`VideoError` (one line naming the file) for a missing, empty, unreadable or
    video-less file, and for one where no frame decodes.
    """
    import av.error

    p = check_file(path)
    container = open_container(p)
    try:
        stream = pick_stream(container)
        if stream is None:
            kinds = sorted({s.type for s in container.streams}) or ["no streams"]
            raise VideoError(f"{p}: no video stream (only {', '.join(kinds)}); pass a recording with video")
        props = _read_stream(p, container, stream)
    except VideoError:
        raise
    except av.error.FFmpegError as exc:
        raise VideoError(f"{p}: cannot read the video stream ({reason(exc)}); the file may be corrupt") from None
    finally:
        container.close()
    return VideoInfo(path=os.fspath(path), **props)


def _read_stream(p: Path, container, stream) -> dict:
    """VideoInfo's fields (all but path and reader) from an open container's main video stream."""
    tb = stream.time_base
    scan = _scan_start(container, stream)
    if scan.first is None:
        raise VideoError(f"{p}: no video frame could be decoded{scan.why}; the file is truncated or corrupt")
    start_time = float(scan.first_pts * tb)
    rotation = _rotation_cw(scan.first)
    sar = _sample_aspect_ratio(stream, scan.first)
    coded_w, coded_h = scan.first.width, scan.first.height
    display_w = max(1, round(coded_w * sar))
    width, height = (coded_h, display_w) if rotation in (90, 270) else (display_w, coded_h)
    fmt = container.format.name
    indexed_count = stream.frames if stream.frames and stream.frames > 0 else 0
    preroll = sum(1 for pts in scan.packet_pts if pts < scan.first_pts)
    if indexed_count and preroll:  # an edit list (an MP4 cut without re-encoding): FFmpeg decodes
        # the frames before the cut from their keyframe on but shows none; the index counts them
        indexed_count = indexed_count - preroll if preroll < len(scan.packet_pts) else 0
    fps, vfr = _frame_rate(stream, [pts for pts in scan.packet_pts if pts >= scan.first_pts], fmt, indexed_count)
    duration = _duration(container, stream, start_time)
    if duration is None or duration <= 0:
        duration = _duration_by_scan(p, start_time, fps)
    frame_count = indexed_count or max(1, round(duration * fps))
    return dict(container=fmt, codec=stream.codec_context.name, width=int(width), height=int(height),
                fps=float(fps), frame_count=int(frame_count), duration=float(duration), start_time=start_time,
                rotation=rotation, sample_aspect_ratio=float(sar), variable_frame_rate=bool(vfr))


def _frame_rate(stream, packet_pts: list[int], fmt: str, indexed_count: int) -> tuple[float, bool]:
    """(average frame rate, variable frame rate) from the stream's rates and its first packets."""
    avg = rate(stream.average_rate)
    guess = rate(stream.guessed_rate)
    pkt_fps, pkt_vfr = _packet_rate(packet_pts, stream.time_base)
    # avg_frame_rate is exact where the container indexes every frame; in a stream (MPEG-TS)
    # it is FFmpeg's estimate over its first packets, so there the packet check decides
    exact_avg = bool(indexed_count) or indexed_container(fmt)
    vfr = pkt_vfr or bool(exact_avg and avg and guess and abs(avg / guess - 1.0) > 0.01)
    if exact_avg:
        fps = avg or guess or pkt_fps or 25.0
    elif vfr:
        fps = pkt_fps or avg or guess or 25.0
    elif avg and guess and abs(guess / avg - 2.0) < 0.1:
        fps = avg  # field rate reported for interlaced video
    else:
        fps = guess or avg or pkt_fps or 25.0
    return fps, vfr


# ------------------------------------------------------------------ the file itself


def check_file(path: str | os.PathLike) -> Path:
    """The path, if it names a non-empty readable regular file; else a one-line VideoError."""
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


# ------------------------------------------------------------------ stream properties


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
        end = c_start + container.duration / 1_000_000
        # a Matroska file written with a start offset (ffmpeg -output_ts_offset, a capture
        # starting at its wall-clock time) may store the end time as its duration: 3610 s for
        # 10 s starting at 3600. The stream's last packets say which it is.
        tail = _end_by_seek(container, stream, end)
        if tail is not None and abs(tail - end) > 1.0:
            end = tail
        return end - start_time
    return None


def _end_by_seek(container, stream, at: float, max_packets: int = 3000) -> float | None:
    """The end time (s) of the last packets of ``stream`` at or before ``at``: a seek and one
    GOP of demuxing, no decoding. None when the file cannot seek there."""
    import av

    tb = stream.time_base
    try:
        container.seek(int(at / tb), stream=stream, backward=True, any_frame=False)
        end = None
        for i, packet in enumerate(container.demux(stream)):
            if packet.pts is not None:
                e = float((packet.pts + (packet.duration or 0)) * tb)
                end = e if end is None else max(end, e)
            if i >= max_packets:
                break
        return end
    except (av.FFmpegError, OSError, ValueError):
        return None


def _duration_by_scan(p: Path, start_time: float, fps: float) -> float:
    """Duration from the last packet's timestamp (files whose headers say nothing): demux only."""
    container = open_container(p)
    try:
        stream = pick_stream(container)
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
    first: Any = None  # the first displayed frame (decoded), None if none decodes
    first_pts: int = 0  # its PTS label
    packet_pts: list = field(default_factory=list)  # PTS of the first packets from the first keyframe
    why: str = ""  # why nothing decoded, when FFmpeg said


def _scan_start(container, stream) -> _Scan:
    """First displayed frame (through the same gate and reorder as every read) + first packet PTS."""
    import av.error

    scan = _Scan()
    try:
        found = first_frame(container, stream, scan.packet_pts, SCAN_PACKETS)
    except av.error.FFmpegError as exc:
        found, scan.why = None, f" ({reason(exc)})"
    if found is not None:
        scan.first_pts, scan.first = found
    # Keep reading packet timestamps (no decoding) for the frame-rate check.
    if scan.first is not None and len(scan.packet_pts) < SCAN_PACKETS:
        try:
            for packet in container.demux(stream):
                if packet.pts is not None and (scan.packet_pts or packet.is_keyframe):
                    scan.packet_pts.append(packet.pts)
                if len(scan.packet_pts) >= SCAN_PACKETS:
                    break
        except av.error.FFmpegError:
            pass
    return scan


__all__ = ["probe", "check_file", "SCAN_PACKETS"]
