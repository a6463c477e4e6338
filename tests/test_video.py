"""tvcaption.video on real clips and on MPEG-TS / MXF copies, against an independent reader.

The reference is plain PyAV decoding (``media.reference_decode``: every frame as coded, times
from the sorted PTS labels) plus OpenCV for the aspect-ratio resize, with the expected rotation
and display sizes written down here (and rotation / aspect checked once against the ffmpeg CLI).
"""

from __future__ import annotations

import dataclasses
import subprocess

import numpy as np
import pytest

from tvcaption.errors import VideoError
from tvcaption.video import (VideoInfo, iter_frames, output_size, probe, read_cnn_frames, read_frames, sample_times,
                              shown_picks)

try:
    from tests.media import TS_OFFSET, media, reference_decode  # noqa: F401  (fixture)
except ImportError:  # tests/ on sys.path instead of the repository root
    from media import TS_OFFSET, media, reference_decode  # type: ignore[no-redef]  # noqa: F401

# Expected probe results. size = display (width, height); rot = clockwise degrees.
SHARED = {
    "bikes.mp4": dict(size=(640, 272), fps=25.0, frames=250, duration=10.0, start=0.0, rot=0, sar=1.0,
                      vfr=False, reader="decord"),
    "goldeneye-vfr-drop3.mp4": dict(size=(1280, 544), fps=16.051, frames=160, duration=9.968, start=0.0, rot=0,
                                    sar=1.0, vfr=True, reader="pyav"),
    "issue-134-rotate.mp4": dict(size=(544, 1280), fps=23.976, frames=240, duration=10.01, start=0.0, rot=90,
                                 sar=1.0, vfr=False, reader="pyav"),
    "issue-195-aspect-ratio.mp4": dict(size=(1024, 576), fps=25.0, frames=628, duration=25.12, start=0.0, rot=0,
                                       sar=16 / 11, vfr=False, reader="decord"),
    "issue-236-split-copy.mkv": dict(size=(1920, 1080), fps=23.976, frames=48, duration=2.017, start=0.0, rot=0,
                                     sar=1.0, vfr=False, reader="decord"),
    "megamind_test.avi": dict(size=(720, 528), fps=23.976, frames=270, duration=11.22, start=0.0417, rot=0,
                              sar=1.0, vfr=False, reader="pyav"),
    "delayed_start.mp4": dict(size=(480, 320), fps=25.0, frames=24, duration=0.96, start=1.075, rot=0, sar=1.0,
                              vfr=False, reader="decord"),
}
TS_START = TS_OFFSET + 1.4  # ffmpeg's MPEG-TS muxer adds 1.4 s of mux delay
GENERATED = {
    "bikes-remux.ts": dict(size=(640, 272), fps=25.0, frames=250, duration=10.0, start=TS_START, rot=0, sar=1.0,
                           vfr=False, reader="pyav"),
    "bikes-mpeg2.ts": dict(size=(640, 272), fps=25.0, frames=250, duration=10.0, start=TS_START, rot=0, sar=1.0,
                           vfr=False, reader="pyav"),
    "goldeneye-remux.ts": dict(size=(1280, 544), fps=16.05, frames=160, duration=9.968, start=TS_START, rot=0,
                               sar=1.0, vfr=True, reader="pyav"),
    "goldeneye-mpeg2.ts": dict(size=(1280, 544), fps=16.05, frames=160, duration=9.968, start=TS_START, rot=0,
                               sar=1.0, vfr=True, reader="pyav"),
    # 720x576 MPEG-2 stores a display aspect code (2.21:1 here): SAR 221:125, 1273 display pixels wide
    "bikes.mxf": dict(size=(1273, 576), fps=25.0, frames=100, duration=4.0, start=0.0, rot=0, sar=221 / 125,
                      vfr=False, reader="decord"),
}
ALL = [*SHARED, *GENERATED]


@pytest.fixture(scope="module")
def clip(scenes_dir, media):
    def get(name: str) -> str:
        return str(scenes_dir / name) if name in SHARED else str(media(name))

    return get


@pytest.fixture(scope="module")
def probed(clip):
    cache: dict[str, VideoInfo] = {}

    def get(name: str) -> VideoInfo:
        if name not in cache:
            cache[name] = probe(clip(name))
        return cache[name]

    return get


def _expected(name: str) -> dict:
    return SHARED.get(name) or GENERATED[name]


def _display(ref: np.ndarray, exp: dict, out_w: int, out_h: int) -> np.ndarray:
    """Reference picture made upright and display-shaped with OpenCV / NumPy."""
    import cv2

    k = (-exp["rot"] // 90) % 4
    pre = (out_h, out_w) if k % 2 else (out_w, out_h)
    h, w = ref.shape[:2]
    if (w, h) != pre:
        interp = cv2.INTER_AREA if pre[0] * pre[1] < w * h else cv2.INTER_LINEAR
        ref = cv2.resize(ref, pre, interpolation=interp)
    return np.rot90(ref, k)


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# ------------------------------------------------------------------ probe


@pytest.mark.parametrize("name", ALL)
def test_probe_fields(probed, name):
    info, exp = probed(name), _expected(name)
    assert (info.width, info.height) == exp["size"]
    assert info.fps == pytest.approx(exp["fps"], rel=0.01)
    assert abs(info.frame_count - exp["frames"]) <= 1
    assert info.duration == pytest.approx(exp["duration"], abs=0.03)
    assert info.start_time == pytest.approx(exp["start"], abs=0.01)
    assert info.rotation == exp["rot"]
    assert info.sample_aspect_ratio == pytest.approx(exp["sar"], rel=1e-3)
    assert info.variable_frame_rate == exp["vfr"]
    assert info.reader == exp["reader"]
    if name.endswith(".ts"):
        assert info.container == "mpegts" and info.start_time > TS_OFFSET
        assert info.codec == ("mpeg2video" if "mpeg2" in name else "h264")


def test_ts_times_start_at_zero(probed):
    info = probed("bikes-remux.ts")
    assert info.start_time > TS_OFFSET
    _, times = read_frames(info, [0.0, 0.05, 1.0])
    assert times.tolist() == pytest.approx([0.0, 0.04, 1.0], abs=1e-6)
    t0, _ = next(iter_frames(info, size=32))
    assert t0 == 0.0


def test_ts_across_the_pts_wrap_reads_in_order(media, clip):
    """An MPEG-TS whose 33-bit timestamps wrap 3.7 s in: the same duration, frames and times
    as the clip it was remuxed from."""
    info, ref = probe(media("bikes-wrap.ts")), probe(clip("bikes.mp4"))
    assert info.duration == pytest.approx(ref.duration, abs=0.05) and info.frame_count == ref.frame_count
    at = [0.0, 3.0, 3.8, 5.0, 9.5]
    frames, times = read_frames(info, at)
    ref_frames, ref_times = read_frames(ref, at)
    assert times.tolist() == pytest.approx(ref_times.tolist(), abs=1e-3)
    assert np.abs(frames.astype(int) - ref_frames.astype(int)).mean() < 1.0  # same pictures (copied stream)


@pytest.mark.parametrize("name, length", [("bikes-offset.mkv", 10.0), ("bikes-offset.webm", 3.0)])
def test_matroska_starting_late_has_its_real_duration(media, name, length):
    """A Matroska/WebM capture starting at 3600 s: FFmpeg's header duration is the end time
    (3610 s); the probe reads the last packets and says 10 s, and frames are read from 0."""
    info = probe(media(name))
    assert info.start_time == pytest.approx(3600.0, abs=0.1)
    assert info.duration == pytest.approx(length, abs=0.1)
    frames, times = read_frames(info, [0.0, length - 0.5])
    assert len(frames) == 2 and times[0] == pytest.approx(0.0, abs=0.05)


# ------------------------------------------------------------------ frames vs the reference


def _picks(n: int) -> list[int]:
    return sorted({0, 1, n // 3, n // 3 + 1, n // 2, (2 * n) // 3, n - 2, n - 1})


def _requests(ref_times: np.ndarray, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """Requested times and the reference frame index expected for each (last pts <= t)."""
    n = len(ref_times)
    times, want = [-1.0, duration + 5.0], [0, n - 1]
    for i in _picks(n)[:-1]:
        gap = ref_times[i + 1] - ref_times[i]
        times += [ref_times[i], ref_times[i] + 0.4 * gap, ref_times[i + 1] - min(0.002, gap / 4)]
        want += [i, i, i]
    order = np.random.default_rng(0).permutation(len(times))  # unsorted, as a caller may ask
    return np.asarray(times)[order], np.asarray(want)[order]


@pytest.mark.parametrize("name", ALL)
def test_read_frames_match_reference(clip, probed, name):
    info, exp = probed(name), _expected(name)
    ref_frames, ref_times, meta = reference_decode(clip(name), keep=_picks(exp["frames"]))
    assert len(ref_times) == exp["frames"]
    assert meta["start"] == pytest.approx(info.start_time, abs=1e-3)
    half_frame = 0.5 / info.fps
    times, want = _requests(ref_times, info.duration)
    frames, got_times = read_frames(info, times)
    assert frames.shape == (len(times), info.height, info.width, 3) and frames.dtype == np.uint8
    np.testing.assert_allclose(got_times, ref_times[want], atol=min(1e-3, half_frame))
    for frame, i in zip(frames, want):
        expected = _display(ref_frames[i], exp, info.width, info.height)
        assert _mad(frame, expected) < 1.0, (name, i)
    # shorter side resized to `size`, same frames
    small, small_times = read_frames(info, times[:4], size=96)
    assert min(small.shape[1:3]) == 96 and small.shape[1:3] == output_size(info, 96)[::-1]
    np.testing.assert_array_equal(small_times, got_times[:4])


@pytest.mark.parametrize("name", [n for n in ALL if _expected(n)["reader"] == "decord"])
def test_decord_and_pyav_paths_agree(probed, name):
    info = probed(name)
    times = sample_times(0.0, info.duration, 6)
    a, ta = read_frames(info, times)
    b, tb = read_frames(dataclasses.replace(info, reader="pyav"), times)
    np.testing.assert_allclose(ta, tb, atol=1e-4)
    assert max(_mad(x, y) for x, y in zip(a, b)) < 2.0


@pytest.mark.parametrize("name", ["bikes-remux.ts", "goldeneye-mpeg2.ts", "megamind_test.avi",
                                  "issue-134-rotate.mp4", "goldeneye-vfr-drop3.mp4"])
def test_iter_frames_match_reference(clip, probed, name):
    info, exp = probed(name), _expected(name)
    n = exp["frames"]
    check = {0, n // 2, n - 1}
    ref_frames, ref_times, _ = reference_decode(clip(name), keep=check)
    times, frames = [], {}
    for i, (t, frame) in enumerate(iter_frames(info)):
        times.append(t)
        if i in check:
            frames[i] = frame
    assert len(times) == len(ref_times) == n
    np.testing.assert_allclose(times, ref_times, atol=1e-6)
    for i in check:
        assert _mad(frames[i], _display(ref_frames[i], exp, info.width, info.height)) < 1.0
    stepped = list(iter_frames(info, size=64, step=7))
    np.testing.assert_allclose([t for t, _ in stepped], ref_times[::7], atol=1e-6)
    assert {f.shape for _, f in stepped} == {(*output_size(info, 64)[::-1], 3)}


@pytest.mark.parametrize("name", ["bikes-remux-cut.ts", "bikes-mpeg2-cut.ts"])
def test_capture_starting_mid_gop(media, name):
    """A DVB capture cut at an arbitrary TS packet: time 0 is the first decodable frame."""
    path = str(media(name))
    info = probe(path)
    n_ref = len(reference_decode(path)[1])
    ref_frames, ref_times, meta = reference_decode(path, keep=_picks(n_ref))
    assert info.reader == "pyav" and info.start_time == pytest.approx(meta["start"], abs=1e-6)
    assert info.start_time > TS_OFFSET + 3 and info.frame_count == n_ref
    assert info.duration == pytest.approx(ref_times[-1] + 1 / info.fps, abs=1e-3)
    times, want = _requests(ref_times, info.duration)
    frames, got_times = read_frames(info, times)
    np.testing.assert_allclose(got_times, ref_times[want], atol=1e-6)
    exp = dict(rot=0)
    assert max(_mad(f, _display(ref_frames[i], exp, info.width, info.height)) for f, i in zip(frames, want)) < 1.0
    np.testing.assert_allclose([t for t, _ in iter_frames(info, size=32)], ref_times, atol=1e-6)


def _ffmpeg_first_frame(path: str, vf: str | None, w: int, h: int) -> np.ndarray:
    """First frame from the ffmpeg CLI (which auto-rotates), optionally through a filter."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-frames:v", "1", *(["-vf", vf] if vf else []),
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout
    return np.frombuffer(raw, np.uint8).reshape(h, w, 3)


def test_rotation_matches_ffmpeg_autorotate(clip, probed):
    info = probed("issue-134-rotate.mp4")
    frames, _ = read_frames(info, [0.0])
    assert frames.shape[1:3] == (1280, 544)  # portrait: upright
    assert _mad(frames[0], _ffmpeg_first_frame(clip("issue-134-rotate.mp4"), None, 544, 1280)) < 1.0


def test_aspect_ratio_matches_ffmpeg_scale(clip, probed):
    info = probed("issue-195-aspect-ratio.mp4")
    frames, _ = read_frames(dataclasses.replace(info, reader="pyav"), [0.0])
    ref = _ffmpeg_first_frame(clip("issue-195-aspect-ratio.mp4"), "scale=iw*sar:ih", 1024, 576)
    assert _mad(frames[0], ref) < 2.0


def test_the_cnn_reads_frames_as_coded(clip, probed):
    """Anamorphic PAL: the picture coded (704x576), not stretched to its display width; square
    pixels (rotated too): read_frames' own frames."""
    info = probed("issue-195-aspect-ratio.mp4")
    got = read_cnn_frames(info, [0.0, 1.0])
    assert got.shape == (2, 576, 704, 3)
    assert _mad(got[0], _ffmpeg_first_frame(clip("issue-195-aspect-ratio.mp4"), None, 704, 576)) < 2.0
    assert read_cnn_frames(info, []).shape[0] == 0
    square = probed("issue-134-rotate.mp4")
    np.testing.assert_array_equal(read_cnn_frames(square, [0.0, 0.5]), read_frames(square, [0.0, 0.5])[0])


def test_shown_picks_spread_inside_the_scene():
    assert list(shown_picks(10, 3)) == [2, 4, 7]
    assert list(shown_picks(4, 2)) == [1, 2]
    assert list(shown_picks(4, 3)) == [1, 2]  # rounded onto the same frame: once
    assert list(shown_picks(5, 5)) == list(shown_picks(5, 9)) == [0, 1, 2, 3, 4]


def test_sorted_times_seek_instead_of_decoding_everything(probed, monkeypatch):
    """Sparse sorted times decode from the keyframe before each, not from the start each time."""
    import tvcaption.video.pyav as video

    info = probed("bikes-mpeg2.ts")  # a keyframe every 12 frames
    decoded = []
    original = video._decoded

    def counting(*args, **kwargs):
        for frame in original(*args, **kwargs):
            decoded.append(frame.pts)
            yield frame

    monkeypatch.setattr(video, "_decoded", counting)
    frames, times = read_frames(info, [0.6, 3.6, 6.6, 9.61])
    assert times.tolist() == pytest.approx([0.6, 3.6, 6.6, 9.6], abs=1e-6)
    assert len(decoded) < 120, len(decoded)  # decoding straight through to 9.6 s: 241 frames


# ------------------------------------------------------------------ bad input


def _bad_files(tmp_path, media):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is a text file, not a video\n" * 20)
    return {
        "missing": (tmp_path / "missing.ts", "not found"),
        "empty": (empty, "empty"),
        "text": (text, "not a readable video"),
        "audio": (media("audio-only.m4a"), "no video stream"),
    }


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "audio"])
def test_bad_input_raises_video_error(tmp_path, media, kind):
    path, why = _bad_files(tmp_path, media)[kind]
    for call in (probe, lambda p: read_frames(p, [0.0]), lambda p: next(iter_frames(p))):
        with pytest.raises(VideoError) as err:
            call(path)
        message = str(err.value)
        assert path.name in message and why in message and "\n" not in message


def test_folder_is_not_a_video(tmp_path):
    with pytest.raises(VideoError, match="folder"):
        probe(tmp_path)


# ------------------------------------------------------------------ small helpers


def test_sample_times():
    np.testing.assert_allclose(sample_times(10.0, 20.0, 5), [11, 13, 15, 17, 19])
    np.testing.assert_allclose(sample_times(0.0, 1.0, 1), [0.5])
    assert sample_times(0.0, 1.0, 0).shape == (0,)
    t = sample_times(3.0, 4.0, 30)
    assert t.min() >= 3.0 and t.max() < 4.0 and np.all(np.diff(t) > 0)


def test_empty_request_and_output_size(probed):
    info = probed("bikes.mp4")
    frames, times = read_frames(info, [], size=64)
    assert frames.shape == (0, 64, 151, 3) and times.shape == (0,)
    assert output_size(info, None) == (640, 272)
    assert output_size(probed("issue-134-rotate.mp4"), 100) == (100, 235)


def test_an_mp4_cut_without_reencoding_starts_at_its_cut(scenes_dir, tmp_path):
    """``ffmpeg -ss 3.3 -i in.mp4 -c copy``: an edit list; FFmpeg decodes the frames from the
    keyframe before the cut but shows none of them, so the first frame shown is no keyframe. It
    must still be time 0 (it was dropped up to the next keyframe: every time 2.7 s early)."""
    cut = tmp_path / "cut.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-ss", "3.3", "-i", str(scenes_dir / "testvideo.mp4"),
                    "-t", "8", "-c", "copy", str(cut)], check=True, timeout=60)
    first_packet = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "packet=pts_time",
                                   "-read_intervals", "%+#1", "-of", "csv=p=0", str(cut)],
                                  capture_output=True, text=True, check=True).stdout.split()[0]
    assert float(first_packet) < -1.0  # the pre-roll: the keyframe before the cut
    shown = int(subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v", "-show_entries",
                                "stream=nb_read_frames", "-of", "csv=p=0", str(cut)],
                               capture_output=True, text=True, check=True).stdout.strip())
    info = probe(str(cut))
    assert info.start_time == 0.0 and info.duration == pytest.approx(8.1, abs=0.1)
    assert info.frame_count == shown
    times, first = [], None
    for t, frame in iter_frames(info):
        first = frame if first is None else first
        times.append(t)
    assert len(times) == shown and times[0] == 0.0 and times[-1] < info.duration
    assert _mad(first, _ffmpeg_first_frame(str(cut), None, info.width, info.height)) < 1.0
