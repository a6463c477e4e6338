"""Decode once: scene detection and frame sampling from one sequential pass over a recording.

Every frame is decoded once, in a thread of its own that also makes the downscaled copy the
scene detector reads (exactly what :func:`tvcaption.scenes.detect_scenes` feeds it, from a
thread the same way): detection runs beside decoding, not after it. The decoded picture itself
(a PyAV frame, YUV, not yet converted) waits in a buffer until the scene it belongs to is
closed by a cut. Then the scene is split like :func:`~tvcaption.scenes.split_long`, the
frames shown at each part's :func:`~tvcaption.video.sample_times` are converted to RGB, and the
scene is handed on while decoding goes on. Sampled frames are upright at the size they were coded, as the CNN reads
every frame (:func:`~tvcaption.video.read_cnn_frames`): it squashes them to 224x224 anyway, and
stretching a PAL picture to its 768 or 1024 display pixels first costs swscale 1.6-2.0 ms of the
3.9-4.3 a frame takes to reach the CNN (EPYC; ``bench/sample_size.py``). The few frames that
analysers reading pictures get (``shown``: OCR) come display-shaped as well.

Memory is bounded whatever the scene length: the buffer keeps every frame of the open scene up
to ``budget_bytes`` and then thins itself to every 2nd, 4th, ... frame (always keeping the
scene's first). A sample then comes from the kept frame shown at (or just before) its time, at
most ``stride - 1`` frames earlier than the exact one; for scenes that fit the budget (about
6 s of SD or 1.2 s of 1080p at the default) the frames are exactly those the two-pass
reader returns.

A cut is reported a few frames after the frame it falls on (PySceneDetect's adaptive detector
looks 12 frames ahead; TransNetV2 up to 75, as it predicts 50 frames at a time with 25 of
look-ahead): the newest ``delay + 4`` frames are never thinned (as far as half the budget allows),
so the next scene still has its first frames.

A scene closed by a cut is held back until the open scene after it has lasted
``min_scene_len`` (or another cut closes that one too): until then the open scene could still
be a too-short last scene, which :func:`~tvcaption.scenes.merge_short_last` merges into the
held one. The held scene keeps its pictures meanwhile (at most ``min_scene_len`` of decoding).

If the detector ever reports cuts out of order, so that a scene already handed on turns out
not to be one, :class:`StreamMismatch` is raised at the end and the caller redoes the
recording in two passes (:func:`tvcaption.pipeline.caption_recording` does).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from tvcaption.background import in_background
from tvcaption.config import ScenesConfig
from tvcaption.scenes import Scene, SceneDetection, make_detector, small_converter, split_long, too_short
from tvcaption.video import output_size, sample_times, shown_picks
from tvcaption.video.pyav import PyavCursor, coded_converter, converter

_EPS = 1e-6
_HAND_OVER = 4  # decoded frames passed from the decoding thread at once
DEFAULT_BUDGET = 96 << 20  # bytes of decoded pictures kept for the open scene (peak RSS: bench/speed.py)


class StreamMismatch(RuntimeError):
    """The scenes handed on during the pass differ from the final detection (cuts out of order)."""


@dataclass(frozen=True)
class SampledScene:
    scene: Scene
    frames: np.ndarray  # (T, H, W, 3) RGB uint8, upright, at the coded size: what the CNN reads
    times: np.ndarray  # (T,) timestamp of each frame returned (seconds from the first frame)
    shown: np.ndarray | None = None  # (K, h, w, 3) display-shaped frames[shown_picks(T, K)], for analysers


@dataclass
class StreamStats:
    """What one pass did, for benchmarks and the progress display."""

    frames: int = 0  # frames decoded
    scenes: int = 0  # scenes handed on (after splitting long ones)
    max_kept: int = 0  # most pictures held at once
    max_stride: int = 1  # coarsest thinning used (1: every frame kept)
    decode_s: float = 0.0  # seconds waiting for the decoding thread (demux, decode, the detector's small frame)
    detect_s: float = 0.0  # seconds of scene detection
    sample_s: float = 0.0  # seconds picking + converting the sampled frames


class _Kept:
    """Frames of the open region (since the last emitted boundary), thinned to fit a budget.

    The newest ``recent`` frames are always all there: a cut is reported a few frames after the
    frame it falls on (the adaptive detector looks ahead), and the next scene must still have
    its first frames. Older ones are thinned to every ``stride``-th frame of the region, and the
    region's first frame is always kept, so a sample is never later than the exact frame.
    """

    def __init__(self, capacity: int, recent: int = 16):
        self.recent = recent
        self.capacity = max(capacity, recent + 2)
        self.entries: list[tuple[float, int, Any]] = []  # (t, frame index, decoded picture)
        self.base = 0  # frame index where the open region starts
        self.stride = 1

    def add(self, t: float, index: int, picture: Any) -> None:
        self.entries.append((t, index, picture))
        if len(self.entries) > self.capacity:
            older, newest = self.entries[:-self.recent], self.entries[-self.recent:]
            while True:
                kept = [e for e in older if (e[1] - self.base) % self.stride == 0]
                if len(kept) + len(newest) <= self.capacity:
                    break
                self.stride *= 2
            self.entries = kept + newest

    def cut(self, boundary: int) -> list[tuple[float, int, Any]]:
        """Entries before frame ``boundary``; the open region starts again there, unthinned."""
        head = [e for e in self.entries if e[1] < boundary]
        self.entries = [e for e in self.entries if e[1] >= boundary]
        self.base, self.stride = boundary, 1
        return head


def _pick(entries: list[tuple[float, int, Any]], targets: np.ndarray) -> list[tuple[float, Any]]:
    """For each target time, the kept frame shown then (last with t <= target), else the first."""
    times = np.fromiter((e[0] for e in entries), dtype=np.float64, count=len(entries))
    pos = np.searchsorted(times, targets + _EPS, side="right") - 1
    return [(entries[p][0], entries[p][2]) for p in np.maximum(pos, 0)]


def stream_scenes(info: Any, options: ScenesConfig | None, frames_per_scene: int,
                  budget_bytes: int = DEFAULT_BUDGET, stats: StreamStats | None = None,
                  shown: int = 0) -> Iterator[SampledScene]:
    """Scenes of a recording with their sampled frames, in order, from one decoding pass.

    ``info`` is a :class:`~tvcaption.video.VideoInfo`. Scenes equal
    ``split_long(detect_scenes(info, options), options.max_scene_len)``. Frames are upright at the
    first picture's coded size; ``shown`` of them (:func:`~tvcaption.video.shown_picks`) also come
    display-shaped (sample aspect ratio applied) in ``SampledScene.shown``.
    """
    one_pass = _OnePass(info, options or ScenesConfig(), frames_per_scene, budget_bytes,
                        stats if stats is not None else StreamStats(), shown)
    yield from one_pass.run()


class _OnePass:
    """One pass over a recording: the detector, the kept pictures, the scene held back, and the
    scenes already handed on."""

    def __init__(self, info: Any, options: ScenesConfig, frames_per_scene: int, budget_bytes: int,
                 stats: StreamStats, shown: int = 0):
        self.info, self.options, self.stats = info, options, stats
        self.frames_per_scene, self.budget_bytes = frames_per_scene, budget_bytes
        make_detector(options, info.fps)  # configuration errors before decoding anything
        # the detector's frame, made from the decoded picture exactly as detect_scenes makes it: BGR at
        # PySceneDetect's processing size, or 48x27 RGB for TransNetV2
        self.to_small, self.small_bgr = small_converter(info, options)
        self.to_full = coded_converter(info)
        self.shown = shown
        # square pixels: the coded frames are the shown ones
        self.to_shown = converter(info, *output_size(info, None)) if shown and not info.square_pixels else None
        self.detection = SceneDetection(info.fps, options, source_size=(info.width, info.height))
        self.kept: _Kept | None = None
        self.emitted: list[Scene] = []
        self.seen_cuts = 0
        self.start_index, self.start_t = 0, 0.0  # where the open scene starts
        self.held: tuple[Scene, list[tuple[float, int, Any]]] | None = None  # closed, may still be merged into

    def run(self) -> Iterator[SampledScene]:
        with PyavCursor(self.info) as cursor:
            # decoding and the detector's small frame in a thread of their own, a few frames ahead
            decoded = in_background(self._decoded(cursor.frames()), depth=max(1, self._depth() // _HAND_OVER))
            try:
                while (items := self._next(decoded)) is not None:
                    for item in items:
                        if self._push(*item):
                            yield from self._close_scenes()
            finally:
                decoded.close()  # the decoding thread stops before the cursor closes
        yield from self._finish()

    def _depth(self) -> int:
        """Decoded pictures waiting for detection: 16, or fewer where that would pass ~48 MB (4K)."""
        picture = max(1, self.info.width * self.info.height * 3 // 2)
        return max(2, min(16, (48 << 20) // picture))

    def _decoded(self, frames: Iterator[tuple[float, Any]]) -> Iterator[list[tuple[float, Any, np.ndarray]]]:
        """(time, picture, small frame) of every frame, a few at a time (fewer hand-overs between threads)."""
        items = []
        for t, picture in frames:
            items.append((t, picture, self.to_small(picture)))
            if len(items) == _HAND_OVER:
                yield items
                items = []
        if items:
            yield items

    def _next(self, frames: Iterator[list]) -> list[tuple[float, Any, np.ndarray]] | None:
        t0 = time.perf_counter()
        item = next(frames, None)
        self.stats.decode_s += time.perf_counter() - t0
        return item

    def _push(self, t: float, picture: Any, small: np.ndarray) -> bool:
        """Detection and the buffer take one decoded picture; False for a repeated timestamp."""
        t0 = time.perf_counter()
        detection, stats = self.detection, self.stats
        before = len(detection.times)
        detection.push(t, small, bgr=self.small_bgr)
        stats.detect_s += time.perf_counter() - t0
        if len(detection.times) == before:
            return False  # a repeated timestamp: the detector skipped it, so do we
        stats.frames += 1
        if self.kept is None:
            frame_bytes = sum(p.buffer_size for p in picture.planes) or 1
            capacity = max(4 * self.frames_per_scene, self.budget_bytes // frame_bytes)
            # every frame the detector may still put a cut on stays unthinned, as far as the budget allows
            self.kept = _Kept(capacity, recent=max(16, min(detection.delay + 4, capacity // 2)))
        self.kept.add(t, before, picture)
        stats.max_kept = max(stats.max_kept, len(self.kept.entries))
        stats.max_stride = max(stats.max_stride, self.kept.stride)
        return True

    def _close_scenes(self) -> Iterator[SampledScene]:
        """Close the open scene at each new cut, and hand on the held scene once it is final."""
        detection = self.detection
        if len(detection.cut_seconds) != self.seen_cuts:
            times = detection.times
            for c in sorted(set(detection.cut_seconds[self.seen_cuts:])):
                b = int(np.searchsorted(times, c - _EPS, side="left"))
                if b <= self.start_index or b >= len(times):
                    continue  # at the first frame, inside a scene already closed, or not decoded yet
                if self.held is not None:  # a later cut: the held scene is not the one before the last
                    yield from self._sampled(self.held[1], self.held[0])
                self.held = (Scene(start=self.start_t, end=float(times[b]), start_frame=self.start_index,
                                   end_frame=b), self.kept.cut(b))
                self.start_index, self.start_t = b, float(times[b])
            self.seen_cuts = len(detection.cut_seconds)
        if self.held is not None and not too_short(detection.times[-1] - self.start_t, self.options.min_scene_len):
            # the open scene already lasts min_scene_len: it cannot be merged into the held one
            yield from self._sampled(self.held[1], self.held[0])
            self.held = None

    def _finish(self) -> Iterator[SampledScene]:
        """The remaining scenes, after checking the ones handed on against the final detection."""
        final = split_long(self.detection.finish(self.info.duration), self.options.max_scene_len)
        if final[:len(self.emitted)] != self.emitted:
            raise StreamMismatch(f"{self.info.path}: scenes found during the pass differ from the final detection")
        if self.kept is not None:
            entries = (self.held[1] if self.held is not None else []) + self.kept.cut(len(self.detection.times) + 1)
            for part in final[len(self.emitted):]:
                # the remaining parts all come from the held scene and the last one(s) still in the buffer
                yield from self._sampled(entries, part)

    def _sampled(self, entries: list[tuple[float, int, Any]], scene: Scene) -> Iterator[SampledScene]:
        """``scene`` split like split_long, each part with the kept frames shown at its sample times."""
        t0 = time.perf_counter()
        for part in split_long([scene], self.options.max_scene_len):
            picks = _pick(entries, sample_times(part.start, part.end, self.frames_per_scene))
            converted: dict[float, np.ndarray] = {}
            for t, picture in picks:
                if t not in converted:
                    converted[t] = self.to_full(picture)
            frames = np.stack([converted[t] for t, _ in picks])
            shown = None
            if self.shown:
                chosen = shown_picks(len(picks), self.shown)
                shown = frames[chosen] if self.to_shown is None else \
                    np.stack([self.to_shown(picks[i][1]) for i in chosen])
            out = SampledScene(part, frames, np.array([t for t, _ in picks], dtype=np.float64), shown)
            self.emitted.append(part)
            self.stats.scenes += 1
            self.stats.sample_s += time.perf_counter() - t0
            yield out
            t0 = time.perf_counter()


__all__ = ["SampledScene", "StreamStats", "StreamMismatch", "stream_scenes", "DEFAULT_BUDGET"]
