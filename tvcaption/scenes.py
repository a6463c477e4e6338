"""Scene detection with PySceneDetect (the only module that imports ``scenedetect``), or TransNetV2.

Frames come from :mod:`tvcaption.video` (one decoding pass, upright, display-shaped, times in
seconds from the first frame, so an MPEG-TS whose first timestamp is 36001.4 s still gives
scenes from 0), and are fed to a PySceneDetect detector the way its ``SceneManager`` does:
BGR, downscaled to about 256 pixels wide, with a ``FrameTimecode`` built from each frame's own
timestamp (exact for variable frame rate). The small frame is made by swscale in one step,
from the nearest pixels (:func:`small_converter`). ``detector = "transnetv2"`` gets 48x27 RGB frames
instead and the learned shot detector of :mod:`tvcaption.shots` (dissolves, fades and wipes too;
its cuts come up to :data:`~tvcaption.shots.DELAY` frames late, which a streaming caller allows
for through :attr:`SceneDetection.delay`). ``"auto"`` is :func:`resolve_detector`'s choice.

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

DETECTORS = ("adaptive", "content", "threshold", "hash", "histogram", "transnetv2", "auto")
PYSCENEDETECT_DELAY = 12  # frames: how late a PySceneDetect detector may report a cut (adaptive's window + 1)
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


def resolve_detector(options: ScenesConfig) -> str:
    """The detector in force: ``options.detector``, with ``"auto"`` made a choice for this machine.

    ``auto`` is ``adaptive`` on CPU, where TransNetV2 costs several times the whole scene stage
    (``bench/results/shot_detectors.md``), and ``transnetv2`` when CUDA is present.
    """
    name = (options.detector or "adaptive").strip().lower()
    if name not in DETECTORS:
        raise ConfigError(f"scenes.detector: unknown detector {options.detector!r}; "
                          f"use one of {', '.join(DETECTORS)}")
    if name == "auto":
        try:
            import torch
        except ImportError:
            return "adaptive"
        return "transnetv2" if torch.cuda.is_available() else "adaptive"
    return name


def make_detector(options: ScenesConfig, fps: float):
    """The configured detector; ``min_scene_len`` seconds become frames at ``fps`` (PySceneDetect's),
    or a :class:`_TransNet` for ``transnetv2``."""
    name = resolve_detector(options)
    if options.min_scene_len < 0:
        raise ConfigError(f"scenes.min_scene_len: {options.min_scene_len} is negative; use seconds >= 0")
    if options.threshold is not None and options.threshold < 0:
        raise ConfigError(f"scenes.threshold: {options.threshold} is negative; use a positive number or none")
    if name == "transnetv2":
        if options.threshold is not None and not 0 < options.threshold < 1:
            raise ConfigError(f"scenes.threshold: {options.threshold} is not a probability; TransNetV2 takes "
                              "0 < threshold < 1 (0.5 by default)")
        return _TransNet(options)
    from scenedetect.detectors import (
        AdaptiveDetector,
        ContentDetector,
        HashDetector,
        HistogramDetector,
        ThresholdDetector,
    )

    classes = {"adaptive": (AdaptiveDetector, "adaptive_threshold"), "content": (ContentDetector, "threshold"),
               "threshold": (ThresholdDetector, "threshold"), "hash": (HashDetector, "threshold"),
               "histogram": (HistogramDetector, "threshold")}
    cls, threshold_arg = classes[name]
    if name in ("adaptive", "content"):
        cls = _summed_in_cv2(cls)
    kwargs: dict[str, Any] = {"min_scene_len": max(0, int(round(options.min_scene_len * fps)))}
    if options.threshold is not None:
        kwargs[threshold_arg] = float(options.threshold)
    return cls(**kwargs)


_FAST: dict[type, type] = {}


def _summed_in_cv2(cls: type) -> type:
    """``cls`` (ContentDetector or AdaptiveDetector) scoring frames with the same numbers, faster.

    PySceneDetect's frame score is the mean absolute difference of H, S and V between a frame and
    the one before, each channel summed through an int32 copy of both frames in numpy: a third of
    the whole scene stage on SD (0.5 ms a frame of 1.6, EPYC). Here one ``cv2.absdiff`` of the HSV
    frames and one ``cv2.sumElems`` give each channel's sum of differences exactly (integers held
    in doubles), and the score is put together as PySceneDetect does: the same float to the bit,
    so the same cuts (tests/test_scenes.py compares every frame's score on real clips). With edges
    in the score, or a stats manager, PySceneDetect's own code runs.
    """
    if cls not in _FAST:
        import cv2
        from scenedetect.detectors import ContentDetector

        def _calculate_frame_score(self, timecode, frame_img):
            if self._weights.delta_edges > 0.0 or self.stats_manager is not None:
                return ContentDetector._calculate_frame_score(self, timecode, frame_img)
            hsv = cv2.cvtColor(frame_img, cv2.COLOR_BGR2HSV)
            last, self._last_hsv = getattr(self, "_last_hsv", None), hsv
            if last is None:
                return 0.0
            pixels = float(hsv.shape[0] * hsv.shape[1])
            hue, sat, lum, _ = cv2.sumElems(cv2.absdiff(hsv, last))
            components = (hue / pixels, sat / pixels, lum / pixels, 0.0)
            return sum(c * w for c, w in zip(components, self._weights, strict=True)) / sum(
                abs(w) for w in self._weights)

        _FAST[cls] = type(cls.__name__, (cls,), {"_calculate_frame_score": _calculate_frame_score,
                                                 "__module__": __name__})
    return _FAST[cls]


class _TransNet:
    """TransNetV2 behind the detector interface: 48x27 RGB frames in, cut frame indices out, with
    cuts closer than ``min_scene_len`` seconds to the previous one (or to the start) dropped."""

    def __init__(self, options: ScenesConfig):
        from tvcaption.shots import THRESHOLD, ShotCuts, ShotPredictor

        self.predictor = ShotPredictor()
        self.cuts = ShotCuts(THRESHOLD if options.threshold is None else float(options.threshold))
        self.min_len = float(options.min_scene_len or 0.0)
        self.last = 0.0  # time of the last cut kept (the start counts as one)

    def process(self, times: Sequence[float], frame: np.ndarray) -> list[float]:
        return self._keep(times, self.cuts.add(self.predictor.push(frame)))

    def finish(self, times: Sequence[float]) -> list[float]:
        return self._keep(times, self.cuts.add(self.predictor.finish()) + self.cuts.finish())

    def _keep(self, times: Sequence[float], cuts: list[int]) -> list[float]:
        kept = []
        for i in cuts:
            if i >= len(times):
                continue  # after the last frame: no new shot
            t = float(times[i])
            if not too_short(t - self.last, self.min_len):
                kept.append(t)
                self.last = t
        return kept


def small_converter(info: Any, options: ScenesConfig):
    """(convert, bgr): the decoded picture -> the frame the detector reads, for a decode-once caller.

    PySceneDetect's detectors: BGR at the processing size, converted and shrunk in one swscale
    step to the nearest pixels (``scaler="POINT"``). Not PySceneDetect's pixels to the bit (its
    SceneManager converts the whole picture, then ``cv2.resize``), but 0.8 grey levels from them
    on average, the same cuts on the benchmark broadcast and every sample clip, for 0.15 to 0.6 of
    the cost (bench/detector_frame.py). TransNetV2: RGB 48x27,
    scaled by FFmpeg in one step from the picture.
    """
    from tvcaption.shots import HEIGHT, WIDTH
    from tvcaption.video import output_size
    from tvcaption.video.pyav import converter

    if resolve_detector(options) == "transnetv2":
        return converter(info, WIDTH, HEIGHT, "rgb24"), False
    w, h = processing_size(info.width, info.height, options)
    small = min(w, h) if (w, h) != (info.width, info.height) else None
    return converter(info, *output_size(info, small), "bgr24", scaler="POINT"), True


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
    resized to the processing size, computed from ``source_size`` or the first frame; 48x27 for
    TransNetV2). Scene frame numbers count the frames pushed, unless ``push`` is given each
    frame's own ``index`` (for a caller that pushes only every n-th frame; detection wants every
    frame though). ``delay``: how many frames after the frame it falls on a cut may be reported.
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
        self.transnet = isinstance(self.detector, _TransNet)
        if self.transnet:
            from tvcaption.shots import DELAY, HEIGHT, WIDTH

            self.size: tuple[int, int] | None = (WIDTH, HEIGHT)
            self.delay = DELAY
        else:
            self.size = processing_size(*source_size, self.options) if source_size else None
            self.delay = PYSCENEDETECT_DELAY
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
            interp = cv2.INTER_AREA if self.transnet else cv2.INTER_LINEAR  # INTER_LINEAR: what SceneManager uses
            frame = cv2.resize(frame, self.size, interpolation=interp)
        if self.transnet:
            if bgr:
                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            self.times.append(t)
            self.indices.append(len(self.indices) if index is None else int(index))
            self.cut_seconds.extend(self.detector.process(self.times, np.ascontiguousarray(frame)))
            return
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
        if not self._done and self.transnet and self.times:
            self.cut_seconds.extend(self.detector.finish(self.times))
        elif not self._done and self._last is not None:
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
    from tvcaption.video import VideoInfo, probe

    options = options or ScenesConfig()
    info = path_or_info if isinstance(path_or_info, VideoInfo) else probe(path_or_info)
    make_detector(options, info.fps)  # configuration errors before decoding anything
    convert, bgr = small_converter(info, options)  # what the single pass (stream.py) feeds the detector too
    from tvcaption.background import in_background
    from tvcaption.video.pyav import PyavCursor

    def small_frames():
        with PyavCursor(info) as cursor:
            for t, picture in cursor.frames():
                yield t, convert(picture)

    # decoding and resizing in a worker thread, detection here (both release the GIL for most of it)
    frames = in_background(small_frames(), depth=16)
    try:
        scenes = detect_scenes_from_frames(frames, info.fps, options, end=info.duration,
                                           source_size=(info.width, info.height), bgr=bgr)
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
           "split_long", "make_detector", "resolve_detector", "small_converter", "processing_size", "too_short",
           "merge_short_last", "PYSCENEDETECT_DELAY"]
