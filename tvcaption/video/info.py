"""What :func:`tvcaption.video.probe` says about a recording, and the frame size that follows from it.

:attr:`VideoInfo.reader` is not probed: it is chosen the first time it is read (that is, where
frames are first read at given times), by :func:`tvcaption.video.decord_reader.choose_reader`,
and remembered per file. Passing ``reader=`` (``dataclasses.replace(info, reader="pyav")``)
fixes it instead. It is an init-only argument, not a dataclass field: ``dataclasses.asdict``,
``repr`` and ``==`` leave it out, so storing or comparing a probe never opens the file again.
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass

READER_NAMES = ("decord", "pyav")


class _ChosenReader:
    """``VideoInfo.reader``: the value given to the constructor, else chosen on first read.

    A data descriptor on the class, and the init-only argument's default (its class access
    returns None: "choose later"). ``__post_init__`` stores the argument through ``__set__``; the
    value lives in the instance's ``__dict__`` under ``_reader``, so the frozen instance stays
    frozen to callers.
    """

    def __set_name__(self, owner, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, info, owner=None):
        if info is None:
            return None  # the argument's default: choose on first use
        chosen = info.__dict__.get(self.slot)
        if chosen is None:
            from tvcaption.video.decord_reader import choose_reader

            chosen = choose_reader(info)
            info.__dict__[self.slot] = chosen
        return chosen

    def __set__(self, info, value) -> None:
        if value is not None and value not in READER_NAMES:
            raise ValueError(f"VideoInfo.reader must be one of {', '.join(READER_NAMES)} or None, not {value!r}")
        info.__dict__[self.slot] = value


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
    # "decord" or "pyav": the reader that is right for this file for reading at given times,
    # chosen on first read (None given: choose then). Init-only, not a field: it is a decision
    # about the file, not a property of it, and making it opens the file.
    reader: InitVar[str | None] = _ChosenReader()

    def __post_init__(self, reader: str | None) -> None:
        object.__setattr__(self, "reader", reader)  # through _ChosenReader.__set__

    @property
    def square_pixels(self) -> bool:
        """Whether the picture is shown as coded (no stretching to the display's aspect)."""
        return abs(self.sample_aspect_ratio - 1.0) < 1e-6


def output_size(info: VideoInfo, size: int | None = None) -> tuple[int, int]:
    """(width, height) of the frames returned for ``size`` (shorter side), upright display shape."""
    w, h = info.width, info.height
    if size is None or size <= 0:
        return w, h
    if w <= h:
        return int(size), max(1, round(h * size / w))
    return max(1, round(w * size / h)), int(size)


__all__ = ["VideoInfo", "output_size", "READER_NAMES"]
