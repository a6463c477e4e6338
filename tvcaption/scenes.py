"""Scene detection with PySceneDetect (the only module that imports ``scenedetect``).

Frames come from :mod:`tvcaption.video` (one decoding pass, upright, display-shaped, times in
seconds from the first frame, so an MPEG-TS whose first timestamp is 36001.4 s still gives
scenes from 0), and are fed to a PySceneDetect detector the way its ``SceneManager`` does:
BGR, downscaled to about 256 pixels wide, with a ``FrameTimecode`` built from each frame's own
timestamp (exact for variable frame rate).

* :func:`detect_scenes` - a recording (path or :class:`~tvcaption.video.VideoInfo`) to scenes.
* :func:`detect_scenes_from_frames` / :class:`SceneDetection` - for a decode-once pipeline that
  decodes frames itself (push ``(t, frame)`` pairs, then ``finish()``).
* :func:`split_long` - scenes longer than a limit split into equal parts.

PySceneDetect's ``min_scene_len`` only keeps two cuts apart: the last scene, from the last cut
to the end of the recording, can be shorter. A last scene shorter than ``min_scene_len``
seconds is therefore merged into the scene before it (when there is one), so that no scene is
shorter than ``min_scene_len`` (:func:`too_short`). :mod:`tvcaption.stream` applies the same rule.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from tvcaption.config import ConfigError, ScenesConfig
from tvcaption.scene import Scene  # the one scene type; detection makes it with times only

DETECTORS = ("adaptive", "content", "threshold", "hash", "histogram")
_MIN_WIDTH = 256  # PySceneDetect's automatic downscale target (scene_manager.DEFAULT_MIN_WIDTH)
_US = Fraction(1, 1_000_000)  # time base of the timecodes handed to detectors
_LEN_EPS = 1e-6  # seconds: a scene this much shorter than min_scene_len still counts as long enough



def too_short(length: float, min_len: float | None) -> bool:
    """Whether a last scene of ``length`` seconds is merged into the one before (``min_scene_len``)."""
    return bool(min_len) and length < float(min_len) - _LEN_EPS


def merge_short_last(scenes: Sequence[Scene], min_len: float | None) -> list[Scene]:
    """The scenes, with a last one shorter than ``min_len`` seconds merged into the one before it."""
    out = list(scenes)
    if len(out) >= 2 and too_short(out[-1].duration, min_len):
        prev, last = out[-2], out.pop()
        out[-1] = Scene(start=prev.start, end=last.end, start_frame=prev.start_frame, end_frame=last.end_frame)
    return out


def make_detector(options: ScenesConfig, fps: float):
    """The configured PySceneDetect detector; ``min_scene_len`` seconds become frames at ``fps``."""
    from scenedetect.detectors import (
        AdaptiveDetector,
        ContentDetector,
        HashDetector,
        HistogramDetector,
        ThresholdDetector,
    )

    name = (options.detector or "adaptive").strip().lower()
    classes = {"adaptive": (AdaptiveDetector, "adaptive_threshold"), "content": (ContentDetector, "threshold"),
               "threshold": (ThresholdDetector, "threshold"), "hash": (HashDetector, "threshold"),
               "histogram": (HistogramDetector, "threshold")}
    if name not in classes:
        raise ConfigError(f"scenes.detector: unknown detector {options.detector!r}; "
                          f"use one of {', '.join(DETECTORS)}")
    if options.min_scene_len < 0:
        raise ConfigError(f"scenes.min_scene_len: {options.min_scene_len} is negative; use seconds >= 0")
    if options.threshold is not None and options.threshold < 0:
        raise ConfigError(f"scenes.threshold: {options.threshold} is negative; use a positive number or none")
    cls, threshold_arg = classes[name]
    kwargs: dict[str, Any] = {"min_scene_len": max(0, int(round(options.min_scene_len * fps)))}
    if options.threshold is not None:
        kwargs[threshold_arg] = float(options.threshold)
    return cls(**kwargs)


def processing_size(width: int, height: int, options: ScenesConfig) -> tuple[int, int]:
    """Frame size the detector works at (PySceneDetect's downscale rule, or options.downscale)."""
    if options.downscale and options.downscale > 0:
        factor = float(options.downscale)
    else:
        longest = max(width, height)
        factor = longest / _MIN_WIDTH if longest >= _MIN_WIDTH else 1.0
    if factor <= 1.0:
        return width, height
    return max(1, round(width / factor)), max(1, round(height / factor))


class SceneDetection:
    """Streaming scene detection: ``push(t, frame)`` for every frame in order, then ``finish()``.

    ``t`` is seconds from the first frame, ``frame`` RGB uint8 (H, W, 3) of any size (it is
    resized to the processing size, computed from ``source_size`` or the first frame). Scene
    frame numbers count the frames pushed, unless ``push`` is given each frame's own ``index``
    (for a caller that pushes only every n-th frame; detection wants every frame though).
    """

    def __init__(self, fps: float, options: ScenesConfig | None = None,
                 source_size: tuple[int, int] | None = None):
        import cv2  # noqa: F401  (fail early if OpenCV is missing)

        self.options = options or ScenesConfig()
        if not fps or fps <= 0 or not math.isfinite(fps):
            fps = 25.0
        self.fps = float(fps)
        self.rate = Fraction(self.fps).limit_denominator(100_000)
        self.detector = make_detector(self.options, self.fps)
        self.size = processing_size(*source_size, self.options) if source_size else None
        self.times: list[float] = []
        self.indices: list[int] = []
        self.cut_seconds: list[float] = []
        self._last = None
        self._done = False

    def push(self, t: float, frame: np.ndarray, index: int | None = None, bgr: bool = False) -> None:
        """One frame: RGB uint8 (H, W, 3), or BGR with ``bgr`` (saves a conversion)."""
        import cv2
        from scenedetect.common import FrameTimecode, Timecode

        if self._done:
            raise RuntimeError("SceneDetection.push after finish")
        t = max(0.0, float(t))
        if self.times and t <= self.times[-1]:
            return  # a repeated or out-of-order frame: keep times strictly increasing
        h, w = frame.shape[:2]
        if self.size is None:
            self.size = processing_size(w, h, self.options)
        if (w, h) != self.size:
            interp = cv2.INTER_LINEAR  # what SceneManager uses
            frame = cv2.resize(frame, self.size, interpolation=interp)
        if not bgr:
            frame = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR)
        timecode = FrameTimecode(Timecode(pts=round(t / _US), time_base=_US), fps=self.rate)
        cuts = self.detector.process_frame(timecode, frame)
        self.cut_seconds.extend(c.seconds for c in cuts)
        self.times.append(t)
        self.indices.append(len(self.indices) if index is None else int(index))
        self._last = timecode

    def finish(self, end: float | None = None) -> list[Scene]:
        """Scenes covering [0, end); ``end`` defaults to the end of the last frame pushed."""
        if not self._done and self._last is not None:
            self.cut_seconds.extend(c.seconds for c in self.detector.post_process(self._last))
        self._done = True
        scenes = _scenes(self.times, self.indices, self.cut_seconds, end, self.fps)
        return merge_short_last(scenes, self.options.min_scene_len)


def _scenes(times: Sequence[float], indices: Sequence[int], cut_seconds: Iterable[float], end: float | None,
            fps: float) -> list[Scene]:
    n = len(times)
    if n == 0:
        return []
    t = np.asarray(times, dtype=np.float64)
    frame_dur = float(np.median(np.diff(t))) if n > 1 else 1.0 / fps
    last_end = float(t[-1]) + frame_dur
    # A truncated file keeps the duration its header claims; the last scene ends at the last frame
    # that really decodes (half a second of slack for containers that round their duration).
    if end is None or not math.isfinite(end) or end <= t[-1] or end > last_end + 0.5:
        end = last_end
    cuts = np.asarray(sorted(set(cut_seconds)), dtype=np.float64)
    idx = np.searchsorted(t, cuts - 1e-6, side="left")  # the frame at (or right after) each cut
    starts = [0] + sorted({int(i) for i in idx if 0 < i < n})
    scenes = []
    for a, b in zip(starts, starts[1:] + [n]):
        s = 0.0 if a == 0 else float(t[a])
        e = float(end) if b == n else float(t[b])
        fa = indices[a] if a else 0
        fb = indices[b] if b < n else indices[-1] + 1
        scenes.append(Scene(start=s, end=e, start_frame=fa, end_frame=fb))
    return scenes


def detect_scenes_from_frames(frames: Iterable[tuple[float, np.ndarray]], fps: float,
                              options: ScenesConfig | None = None, end: float | None = None,
                              source_size: tuple[int, int] | None = None, bgr: bool = False) -> list[Scene]:
    """Scenes of frames decoded elsewhere: ``(t, rgb)`` (or ``(t, bgr)``) pairs in display order, every frame."""
    detection = SceneDetection(fps, options, source_size)
    for t, frame in frames:
        detection.push(t, frame, bgr=bgr)
    return detection.finish(end)


def detect_scenes(path_or_info: str | os.PathLike | Any, options: ScenesConfig | None = None) -> list[Scene]:
    """Scenes of a recording, in seconds from its first frame, covering [0, duration)."""
    from tvcaption.video import VideoInfo, iter_frames, probe

    options = options or ScenesConfig()
    info = path_or_info if isinstance(path_or_info, VideoInfo) else probe(path_or_info)
    make_detector(options, info.fps)  # configuration errors before decoding anything
    w, h = processing_size(info.width, info.height, options)
    size = min(w, h) if (w, h) != (info.width, info.height) else None
    from tvcaption.background import in_background

    # decoding and resizing in a worker thread, detection here (both release the GIL for most of it)
    frames = in_background(iter_frames(info, size=size, bgr=True, scaler="cv2"), depth=16)  # SceneManager's resize
    try:
        scenes = detect_scenes_from_frames(frames, info.fps, options, end=info.duration,
                                           source_size=(info.width, info.height), bgr=True)
    finally:
        frames.close()
    return scenes


def split_long(scenes: Sequence[Scene], max_len: float) -> list[Scene]:
    """Scenes longer than ``max_len`` seconds split into the fewest equal parts each <= max_len."""
    if max_len is None or max_len <= 0 or not math.isfinite(max_len):
        return list(scenes)
    out: list[Scene] = []
    for s in scenes:
        length = s.end - s.start
        parts = max(1, math.ceil(length / max_len - 1e-9))
        if parts == 1:
            out.append(s)
            continue
        nframes = s.end_frame - s.start_frame
        for i in range(parts):
            a = s.start + length * i / parts
            b = s.end if i == parts - 1 else s.start + length * (i + 1) / parts
            fa = s.start_frame + round(nframes * i / parts)
            fb = s.end_frame if i == parts - 1 else s.start_frame + round(nframes * (i + 1) / parts)
            out.append(Scene(start=a, end=b, start_frame=fa, end_frame=fb))
    return out


__all__ = ["Scene", "DETECTORS", "detect_scenes", "detect_scenes_from_frames", "SceneDetection",
           "split_long", "make_detector", "processing_size", "too_short", "merge_short_last"]
