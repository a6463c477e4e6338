"""Dataset readers on the shared caption corpora, the real MSVD clips and small official-format files."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import pytest

from tvcaption.data import Clip, detect_format, read_dataset, read_msrvtt, read_msvd, read_tvcaption
from tvcaption.errors import TvcaptionError


def test_msvd_tsv_corpus(shared_data):
    root = shared_data / "captions" / "msvd"
    clips = read_msvd(root)
    assert Counter(c.split for c in clips) == {"train": 1200, "val": 100, "test": 670}
    assert sum(len(c.captions) for c in clips) == 80_827
    assert len({c.id for c in clips}) == 1970
    assert all(c.captions and all(cap.strip() == cap and cap for cap in c.captions) for c in clips)
    assert all(c.video == "" for c in clips)  # captions only: no YouTubeClips/ here
    assert read_dataset(root) == clips
    val = read_dataset(root / "MSVD_val.tsv")
    assert len(val) == 100 and {c.split for c in val} == {"val"}
    assert val[0].id == "bQJQGoJF7_k_162_169"
    assert val[0].captions[0] == "a man is filling up a bag with meat"


def test_msrvtt_val(shared_data):
    root = shared_data / "captions" / "msrvtt"
    clips = read_msrvtt(root / "val_videodatainfo.json")
    assert len(clips) == 497 and {c.split for c in clips} == {"val"}
    assert all(len(c.captions) == 20 for c in clips)
    assert clips[0].id == "video6513" and clips[0].slots is None and clips[0].hard is False
    assert detect_format(root) == "msrvtt"
    assert read_dataset(root) == clips


def test_msrvtt_finds_videos(shared_data, tmp_path):
    data = json.loads((shared_data / "captions" / "msrvtt" / "val_videodatainfo.json").read_text())
    data["videos"] = data["videos"][:3]
    data["videos"][0]["split"] = "train"
    (tmp_path / "train_val_videodatainfo.json").write_text(json.dumps(data))
    (tmp_path / "TrainValVideo").mkdir()
    (tmp_path / "TrainValVideo" / f"{data['videos'][1]['video_id']}.mp4").write_bytes(b"")
    clips = read_dataset(tmp_path)
    assert [c.split for c in clips] == ["train", "val", "val"]
    assert clips[0].video == "" and clips[1].video.endswith(".mp4") and Path(clips[1].video).exists()
    assert [len(c.captions) for c in clips] == [20, 20, 20]
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / f"{data['videos'][2]['video_id']}.mp4").write_bytes(b"")
    assert read_msrvtt(tmp_path, videos_dir=other)[2].video == str(other / f"{data['videos'][2]['video_id']}.mp4")


def test_real_msvd_clips(shared_data):
    root = shared_data / "captioned" / "msvd"
    clips = read_dataset(root)
    assert len(clips) == 7
    for c in clips:
        assert Path(c.video).is_file() and c.video.endswith(".avi")
        assert Path(c.video).stem == c.id
        assert 29 <= len(c.captions) <= 55
        assert c.split == "test"
    assert read_msvd(root / "captions.json") == clips


def test_all_video_descriptions(tmp_path):
    (tmp_path / "AllVideoDescriptions.txt").write_text(
        "# comment line\n# another\n"
        "abc_1_5 a man is playing a guitar\n"
        "abc_1_5 someone plays guitar\n"
        "\n"
        "xyz_10_20 a cat is eating\n"
    )
    (tmp_path / "YouTubeClips").mkdir()
    (tmp_path / "YouTubeClips" / "abc_1_5.avi").write_bytes(b"")
    clips = read_dataset(tmp_path)
    assert [c.id for c in clips] == ["abc_1_5", "xyz_10_20"]
    assert clips[0].captions == ("a man is playing a guitar", "someone plays guitar")
    assert clips[0].video == str(tmp_path / "YouTubeClips" / "abc_1_5.avi") and clips[1].video == ""
    assert {c.split for c in clips} == {"train"}  # the first 1200 of the standard split
    assert read_msvd(tmp_path / "AllVideoDescriptions.txt") == clips


def test_tvcaption_layout(tmp_path):
    data = {"info": {}, "videos": [
        {"video_id": "v0", "split": "validate", "category": 8, "url": "", "start time": 0, "end time": 2, "id": 0,
         "slots": {"kind": "cat"}, "hard": True}],
        "sentences": [{"caption": "b", "video_id": "v0", "sen_id": 1}, {"caption": "a", "video_id": "v0", "sen_id": 0}]}
    (tmp_path / "videodatainfo.json").write_text(json.dumps(data))
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "v0.mp4").write_bytes(b"")
    assert detect_format(tmp_path) == "tvcaption"
    [clip] = read_dataset(tmp_path)
    assert clip == Clip("v0", str(tmp_path / "videos" / "v0.mp4"), ("a", "b"), "val", {"kind": "cat"}, True)
    assert read_tvcaption(tmp_path) == [clip]
    with pytest.raises(dataclasses.FrozenInstanceError):
        clip.split = "train"  # type: ignore[misc]


@pytest.mark.parametrize("content,match", [
    (None, "not a known dataset layout"),
    ("{broken", "not valid JSON"),
    ('{"something": 1}', "not a known dataset layout"),
])
def test_unknown_layout_is_a_one_line_error(tmp_path, content, match):
    target = tmp_path
    (tmp_path / "notes.md").write_text("hello")
    if content is not None:
        target = tmp_path / "data.json"
        target.write_text(content)
    with pytest.raises(TvcaptionError, match=match) as exc:
        read_dataset(target)
    msg = str(exc.value)
    assert "\n" not in msg and str(target) in msg


def test_missing_path_and_bad_split(tmp_path):
    with pytest.raises(TvcaptionError, match="not found"):
        read_dataset(tmp_path / "nope")
    bad = {"videos": [{"video_id": "v", "split": "holdout"}], "sentences": []}
    (tmp_path / "x_videodatainfo.json").write_text(json.dumps(bad))
    with pytest.raises(TvcaptionError, match="unknown split"):
        read_msrvtt(tmp_path)
