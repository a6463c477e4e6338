"""Decode once (tvcaption.stream): the same scenes and frames as detect-then-seek, in bounded memory."""

from __future__ import annotations

import dataclasses
import functools
import threading
import time

import numpy as np
import pytest

from tvcaption.config import Config, ScenesConfig, with_overrides
from tvcaption.pipeline import in_background
from tvcaption.scenes import detect_scenes, split_long
from tvcaption.stream import StreamStats, stream_scenes
from tvcaption.video import output_size, probe, sample_times
from tvcaption.video.pyav import read as _pyav_read

try:
    from tests.media import media  # noqa: F401  (fixture)
except ImportError:  # tests/ on sys.path instead of the repo root
    from media import media  # type: ignore[no-redef]  # noqa: F401

CLIPS = ["bikes.mp4", "goldeneye-vfr-drop3.mp4", "issue-134-rotate.mp4", "megamind_test.avi",
         "bikes-mpeg2.ts", "goldeneye-remux.ts"]


def _path(name, media, scenes_dir):
    return media(name) if name.endswith(".ts") else scenes_dir / name


def _two_pass(info, options, frames):
    scenes = split_long(detect_scenes(info, options), options.max_scene_len)
    w, h = output_size(info)
    reads = [_pyav_read(info, sample_times(s.start, s.end, frames), w, h) for s in scenes]
    return scenes, reads


@pytest.mark.parametrize("name", CLIPS)
def test_one_pass_gives_the_scenes_and_frames_of_two(name, media, scenes_dir):
    info = probe(_path(name, media, scenes_dir))
    options = ScenesConfig(max_scene_len=4.0)  # some scenes get split too
    scenes, reads = _two_pass(info, options, 6)
    stats = StreamStats()
    got = list(stream_scenes(info, options, 6, budget_bytes=192 << 20, stats=stats))
    assert [g.scene for g in got] == scenes
    assert stats.max_stride == 1  # these clips' scenes fit 192 MB: every frame was available
    for g, (frames, times) in zip(got, reads):
        np.testing.assert_array_equal(g.times, times)
        np.testing.assert_array_equal(g.frames, frames)
    assert stats.frames > 0 and stats.scenes == len(scenes)


@pytest.mark.parametrize("name, coded", [("issue-195-aspect-ratio.mp4", (704, 576)),  # SAR 16:11
                                           ("issue-134-rotate.mp4", (544, 1280))])  # turned 90 degrees
def test_frames_come_as_coded_and_the_shown_pictures_display_shaped(name, coded, scenes_dir):
    import cv2

    info = probe(scenes_dir / name)
    options = ScenesConfig(max_scene_len=4.0)
    _, reads = _two_pass(info, options, 4)  # display-shaped, as read_frames gives them
    got = list(stream_scenes(info, options, 4, budget_bytes=192 << 20, shown=4))  # no thinning: exact frames
    w, h = output_size(info)
    for g, (frames, times) in zip(got, reads, strict=True):
        assert g.frames.shape[1:] == (coded[1], coded[0], 3)  # upright, at the coded size
        np.testing.assert_array_equal(g.shown, frames)  # the pictures analysers get: as shown
        np.testing.assert_array_equal(g.times, times)
        if (w, h) == coded:  # square pixels: the very same conversion
            np.testing.assert_array_equal(g.frames, frames)
            continue
        stretched = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in g.frames])
        assert np.abs(stretched.astype(np.int16) - frames).mean() < 2.0  # the same pictures, resampled once less
    fewer = list(stream_scenes(info, options, 4, budget_bytes=192 << 20, shown=2))  # two of four
    for g, (frames, _) in zip(fewer, reads, strict=True):
        np.testing.assert_array_equal(g.shown, frames[[1, 2]])


def test_a_small_budget_thins_frames_but_keeps_scenes_and_bounds_memory(scenes_dir):
    info = probe(scenes_dir / "testvideo.mp4")  # 24 s, 4 scenes, 1280x720: about 1.4 MB a picture
    options = ScenesConfig(max_scene_len=0)
    scenes, reads = _two_pass(info, options, 10)
    frame_bytes = 1280 * 720 * 3 // 2
    stats = StreamStats()
    got = list(stream_scenes(info, options, 10, budget_bytes=30 * frame_bytes, stats=stats))
    assert [g.scene for g in got] == scenes
    assert stats.max_kept <= 40  # the budget (40 frames: 4 per sample at least), never more
    assert stats.max_stride >= 8  # the long scenes did not fit
    period = 1.0 / info.fps
    for g, (_, times) in zip(got, reads):
        # a thinned sample is the kept frame shown at (or before) the exact one: at most stride-1 frames early
        early = times - g.times
        assert np.all(early >= -1e-6)
        assert np.all(early <= (stats.max_stride - 1) * period + 1e-3)
        assert np.all((g.times >= g.scene.start - 1e-6) & (g.times < g.scene.end))


@pytest.mark.parametrize("name", ["bikes.mp4", "issue-195-aspect-ratio.mp4"])  # the second: pixels not square
def test_index_single_and_two_pass_agree(scenes_dir, name):
    from tvcaption.engine import Engine
    from tvcaption.pipeline import captions_of

    config = with_overrides(Config(), "index", analysers=["caption", "tags"])  # frames as coded, both ways
    engine = Engine(config)
    info = probe(scenes_dir / name)
    once = captions_of(info, config, engine)
    twice = captions_of(info, dataclasses.replace(config, index=dataclasses.replace(config.index, single_pass=False)),
                        engine)
    assert [(c.start, c.end, c.caption, c.tags) for c in once] == [(c.start, c.end, c.caption, c.tags) for c in twice]
    for a, b in zip(once, twice):
        assert a.score == pytest.approx(b.score, abs=1e-4)
        assert a.tag_scores == pytest.approx(b.tag_scores, abs=1e-3)


def test_in_background_passes_items_errors_and_stops_early():
    assert list(in_background(iter(range(50)), depth=3)) == list(range(50))

    def broken():
        yield 1
        raise ValueError("bad packet")

    with pytest.raises(ValueError, match="bad packet"):
        list(in_background(broken()))

    produced = []
    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                produced.append(i)
                yield i
                i += 1
        finally:
            closed.set()

    it = in_background(endless(), depth=2)
    assert next(it) == 0
    it.close()  # the consumer gives up: the worker must stop and close its source, not run on
    assert closed.wait(5)
    n = len(produced)
    time.sleep(0.2)
    assert len(produced) == n and n <= 5


def test_leaving_a_pass_early_stops_its_decoding_thread(scenes_dir):
    """The pass decodes in a thread of its own: a consumer that stops after the first scene must
    leave no thread decoding from a container that is being closed (and none running on)."""
    info = probe(scenes_dir / "bikes.mp4")
    before = {t for t in threading.enumerate() if t.name == "tvcaption-decode"}
    sampled = stream_scenes(info, ScenesConfig(), 4)
    first = next(sampled)
    assert first.frames.shape[0] == 4
    sampled.close()
    left = {t for t in threading.enumerate() if t.name == "tvcaption-decode"} - before
    assert not left, "the decoding thread still runs after the pass was closed"


def test_out_of_order_cuts_fall_back_to_two_passes(scenes_dir, monkeypatch, caplog):
    import tvcaption.stream as stream
    from tvcaption.engine import Engine
    from tvcaption.pipeline import captions_of

    real = stream.stream_scenes

    def mismatched(info, *args, **kwargs):
        yield from real(info, *args, **kwargs)
        raise stream.StreamMismatch(f"{info.path}: scenes found during the pass differ from the final detection")

    monkeypatch.setattr(stream, "stream_scenes", mismatched)
    config = with_overrides(Config(), "features", batch_size=1)  # one scene per CNN batch...
    info = probe(scenes_dir / "bikes.mp4")
    engine = Engine(config)
    engine.analyse_stream = functools.partial(engine.analyse_stream, chunk=1)  # ...and per progress report
    reported: list[int] = []
    captions = captions_of(info, config, engine, lambda seconds, done: reported.append(len(done)))
    assert [c.start for c in captions] == [s.start for s in split_long(detect_scenes(info, config.scenes),
                                                                       config.scenes.max_scene_len)]
    assert "two passes" in caplog.text
    # each report holds every caption so far: 1, 2, 3... in the first pass, then the second pass's all
    assert len(reported) >= 3 and reported[:-1] == list(range(1, len(reported))) and reported[-1] == len(captions)
