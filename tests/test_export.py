"""SRT / WebVTT / JSON export, checked by independent parsers (srt, webvtt-py) and by ffmpeg."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import srt
import webvtt
from hypothesis import given, settings
from hypothesis import strategies as st

from tvcaption.db.store import SceneRecord, Store, connect
from tvcaption.errors import TvcaptionError
from tvcaption.export import (
    ELLIPSIS, MAX_LINE, MAX_LINES, MIN_DURATION, Cue, JSONWriter, SRTWriter, VTTWriter, balance,
    export_all, export_recording, get_writer, layout_cues, pages, truncate, write_json, write_srt, write_vtt,
)

EXAMPLES = int(os.environ.get("TVCAPTION_HYPOTHESIS_EXAMPLES", "200"))

LONG = ("a man in a dark suit is standing behind a wooden desk and talking about the weather "
        "forecast for the coming weekend while a map of the country is shown behind him")
CUES = [
    Cue(0.0, 2.5, "a man sings on a stage"),
    Cue(2.5, 3.0, "a short flash"),                            # 0.5 s, next cue right after: stays
    Cue(3.0, 3.4, "une femme chante à l'opéra — 日本語のテレビ"),  # 0.4 s, gap after: extended to 1 s
    Cue(5.0, 17.0, LONG),                                      # long: split into pages within 5..17
    Cue(17.0, 18.2, LONG),                                     # long but short: truncated with an ellipsis
    Cue(3725.5, 3731.25, "a dog & a cat <live>"),              # past an hour; markup characters
]


def check_conventions(cues: list[Cue], source: list[Cue]) -> None:
    for a, b in zip(cues, cues[1:]):
        assert a.end <= b.start, (a, b)
    for cue in cues:
        lines = cue.text.split("\n")
        assert 1 <= len(lines) <= MAX_LINES and all(0 < len(line) <= MAX_LINE for line in lines), cue
        assert cue.start < cue.end
        assert any(s.start <= cue.start and cue.end <= max(s.end, s.start + MIN_DURATION) for s in source), cue


def test_layout_rules():
    cues = layout_cues(CUES)
    check_conventions(cues, CUES)
    assert cues[0] == Cue(0.0, 2.5, "a man sings on a stage")
    assert cues[1] == Cue(2.5, 3.0, "a short flash")  # no room to extend
    assert (cues[2].start, cues[2].end) == (3.0, 4.0)  # extended into the gap
    long_pages = [c for c in cues if 5.0 <= c.start < 17.0]
    assert len(long_pages) == 2 and long_pages[0].start == 5.0 and long_pages[-1].end == 17.0
    assert " ".join(c.text.replace("\n", " ") for c in long_pages) == LONG  # every word kept
    cut = next(c for c in cues if c.start == 17.0)
    assert cut.text.endswith(ELLIPSIS) and LONG.startswith(cut.text.replace("\n", " ")[:-1])
    assert cues[-1].end == 3731.25


def test_layout_edges():
    assert balance("a man sings".split()) == ["a man sings"]
    top, bottom = balance(("word " * 12).split())
    assert len(top) <= len(bottom) <= MAX_LINE and abs(len(top) - len(bottom)) <= 5
    assert balance(["x" * 40, "y" * 40, "zzz"]) is None
    assert all(len(line) <= MAX_LINE for page in pages("x" * 200) for line in page)  # unbreakable word
    assert truncate("the " * 40)[-1].endswith(ELLIPSIS)
    overlapping = [Cue(0, 5, "first"), Cue(3, 6, "second"), Cue(3, 3.0001, "gone"), Cue(7, 7.5, "   ")]
    assert layout_cues(overlapping) == [Cue(0, 3, "first"), Cue(3, 6, "second")]
    assert layout_cues([Cue(0, 0.2, "last")], duration=0.5) == [Cue(0, 0.2, "last")]  # not past the end
    assert layout_cues([Cue(0, 0.2, "a --> b")]) == [Cue(0, 1.0, "a \u2192 b")]


scene_lists = st.lists(
    st.tuples(st.floats(0, 100, allow_nan=False), st.floats(0.001, 20, allow_nan=False),
              st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)),
    max_size=12,
).map(lambda rows: [Cue(start, start + length, text) for start, length, text in rows])


@settings(max_examples=EXAMPLES, deadline=None)
@given(scene_lists)
def test_layout_properties(source):
    check_conventions(layout_cues(source), source)


def test_srt_is_valid(tmp_path: Path):
    path = write_srt(CUES, tmp_path / "out.srt")
    raw = path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf") and "日本語".encode() in raw
    parsed = list(srt.parse(raw.decode("utf-8")))
    expected = layout_cues(CUES)
    assert [p.index for p in parsed] == list(range(1, len(expected) + 1))
    assert [p.content for p in parsed] == [c.text for c in expected]
    assert [(p.start.total_seconds(), p.end.total_seconds()) for p in parsed] == \
        [(round(c.start, 3), round(c.end, 3)) for c in expected]
    assert "01:02:05,500 --> 01:02:11,250" in raw.decode()


def test_vtt_is_valid(tmp_path: Path):
    path = write_vtt(CUES, tmp_path / "out.vtt")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("WEBVTT\n\n") and "a dog &amp; a cat &lt;live&gt;" in text
    parsed = webvtt.read(str(path))
    expected = layout_cues(CUES)
    assert len(parsed.captions) == len(expected)
    assert parsed.captions[2].text == expected[2].text and parsed.captions[-1].start == "01:02:05.500"
    assert [c.start_in_seconds + c.start_time.milliseconds / 1000 for c in parsed.captions[:3]] == [0.0, 2.5, 3.0]


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not on PATH")
@pytest.mark.parametrize("writer", [SRTWriter(), VTTWriter()], ids=["srt", "vtt"])
def test_ffmpeg_reads_the_track(tmp_path: Path, writer):
    path = writer.write(CUES, tmp_path / f"out.{writer.extension}")
    proc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "srt", "pipe:1"],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr.decode(errors="replace")
    converted = list(srt.parse(proc.stdout.decode("utf-8")))
    expected = layout_cues(CUES)
    assert len(converted) == len(expected)
    assert converted[2].content == expected[2].text  # UTF-8 survived
    assert converted[-1].start.total_seconds() == 3725.5


def test_json_keeps_scene_times_and_full_text(tmp_path: Path):
    rows = json.loads(write_json(CUES, tmp_path / "out.json").read_text(encoding="utf-8"))
    assert rows[3] == {"start": 5.0, "end": 17.0, "text": LONG}
    assert len(rows) == len(CUES) and rows[2]["text"] == CUES[2].text


def test_writers_differ_only_in_attributes():
    assert [(w.extension, w.decimal_marker, w.numbered) for w in (SRTWriter, VTTWriter, JSONWriter)] == \
        [("srt", ",", True), ("vtt", ".", False), ("json", ".", False)]
    assert SRTWriter().format_timestamp(3725.5004) == "01:02:05,500"
    assert VTTWriter().format_timestamp(0.0006) == "00:00:00.001"
    assert isinstance(get_writer(".VTT"), VTTWriter) and isinstance(get_writer("webvtt"), VTTWriter)
    with pytest.raises(TvcaptionError, match="unknown export format"):
        get_writer("ass")
    assert SRTWriter().format([]) == "" and VTTWriter().format([]) == "WEBVTT\n\n"


@pytest.fixture
def store(tmp_path: Path):
    store = Store(connect(f"sqlite:///{tmp_path / 'tv.db'}"))
    for path, captions in (("/archive/a/news.ts", ["a man sings", "a dog runs"]),
                           ("/archive/b/news.ts", ["a cat sleeps"]),
                           ("/archive/sport.mxf", ["players run on a field"])):
        claim = store.claim(path, "h", "w", {"duration": 10.0})
        store.save_result(claim.recording_id, [
            SceneRecord(2.0 * i, 2.0 * i + 2.0, 50 * i, 50 * i + 50, c, tags=[("tag", 0.5)])
            for i, c in enumerate(captions)], "m")
    store.mark_failed("/archive/broken.ts", "VideoError: no video stream\ntraceback...")
    yield store
    store.engine.dispose()


def test_export_recording(store: Store, tmp_path: Path):
    out = export_recording(store, "/archive/a/news.ts", "srt", tmp_path / "subs")
    assert out == tmp_path / "subs" / "news.srt"
    parsed = list(srt.parse(out.read_text(encoding="utf-8")))
    assert [(p.start.total_seconds(), p.end.total_seconds(), p.content) for p in parsed] == \
        [(0.0, 2.0, "a man sings"), (2.0, 4.0, "a dog runs")]
    out = export_recording(store.engine, "/archive/sport.mxf", "vtt", tmp_path)
    assert webvtt.read(str(out)).captions[0].text == "players run on a field"
    with pytest.raises(TvcaptionError, match="not in the database"):
        export_recording(store, "/archive/missing.ts", "srt", tmp_path)
    with pytest.raises(TvcaptionError, match="status failed: VideoError: no video stream\\)"):
        export_recording(store, "/archive/broken.ts", "srt", tmp_path)


def test_export_all_keeps_same_named_recordings_apart(store: Store, tmp_path: Path):
    written = export_all(store, "vtt", tmp_path / "all")
    names = sorted(p.name for p in written)
    assert len(names) == 3 and "sport.vtt" in names
    assert all(n.startswith("news-") for n in names if n != "sport.vtt")
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == names  # no temporary files left
