"""SRT / WebVTT / JSON export, checked by independent parsers (srt, webvtt-py) and by ffmpeg.

The cue rules (module docstring of tvcaption.export) are checked on what the parsers read back,
for every format: every word of every caption in order, no cue under 1 s (unless the whole
recording is too short for its text), no overlaps, at most 2 lines of 42 characters, nothing
past the recording's end.
"""

from __future__ import annotations

import functools
import html
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
import srt
import webvtt
from hypothesis import given, settings
from hypothesis import strategies as st

from annotated import annotated
from tvcaption.db.store import Store, connect
from tvcaption.errors import TvcaptionError
from tvcaption.export import (
    MAX_LINE, MAX_LINES, MIN_DURATION, SEPARATOR, Cue, JSONWriter, SRTWriter, TTMLWriter, VTTWriter, balance, export_all,
    export_recording, get_writer, layout_cues, output_names, pages, safe_name, write_json, write_srt, write_vtt,
)

EXAMPLES = int(os.environ.get("TVCAPTION_HYPOTHESIS_EXAMPLES", "200"))

LONG = ("a man in a dark suit is standing behind a wooden desk and talking about the weather "
        "forecast for the coming weekend while a map of the country is shown behind him")
CUES = [
    Cue(0.0, 2.5, "a man sings on a stage"),
    Cue(2.5, 3.0, "a short flash"),                            # 0.5 s, next scene right after: joins it
    Cue(3.0, 3.4, "une femme chante à l'opéra — 日本語のテレビ"),  # 0.4 s, gap after: runs on into it
    Cue(5.0, 17.0, LONG),                                      # long: split into 2 cues
    Cue(17.0, 18.2, LONG),                                     # the same caption again: one cue with the above
    Cue(20.0, 20.5, LONG),                                     # long in a short scene, gap after: runs on
    Cue(3725.5, 3731.25, "a dog & a cat <live>"),              # past an hour; markup characters
]
# bikes.mp4's scenes before the last one was merged (0.32 s at the end), plus a 0.04 s scene
BIKES = [(0.0, 1.2), (1.2, 3.04), (3.04, 5.48), (5.48, 7.48), (7.48, 9.68), (9.68, 9.72), (9.72, 10.0)]


# --- an independent check of the rules, on cues as a parser reads them back -------------------

def _chars(text: str) -> str:
    """The text as the sequence of its non-space characters, as the cues must show it."""
    return "".join(text.replace("-->", "\u2192").replace(SEPARATOR, "").split())


def _shown_in_order(shown: str, captions: list[str]) -> bool:
    """Whether ``shown`` is the captions in order, where a caption equal to the one before may be left out."""
    @functools.lru_cache(maxsize=None)
    def match(k: int, pos: int) -> bool:
        if k == len(captions):
            return pos == len(shown)
        here = captions[k]
        if shown.startswith(here, pos) and match(k + 1, pos + len(here)):
            return True
        return k > 0 and captions[k - 1] == here and match(k + 1, pos)

    return match(0, 0)


def check_rules(cues: list[tuple[float, float, str]], source: list[Cue], duration: float | None) -> None:
    """``cues``: (start, end, text) as read back; ``source``: the scenes written."""
    ordered = sorted((c for c in source if c.text.split()), key=lambda c: (c.start, c.end))
    captions = [_chars(c.text) for c in ordered]
    assert _shown_in_order("".join(_chars(t) for _, _, t in cues), captions), (cues, ordered)
    for (_, end, _), (start, _, _) in zip(cues, cues[1:]):
        assert end <= start + 1e-9, cues  # no overlap, in time order
    for start, end, text in cues:
        lines = text.split("\n")
        assert 1 <= len(lines) <= MAX_LINES and all(0 < len(line) <= MAX_LINE for line in lines), text
        assert 0 <= start < end, (start, end)
        if duration:
            assert end <= round(duration, 3) + 1e-9, (end, duration)
    if any(end - start < MIN_DURATION - 1e-9 for start, end, _ in cues):
        # only when the recording is too short for its text: less than 1 s per cue from the first
        assert duration is not None and duration - cues[0][0] < len(cues) * MIN_DURATION, (cues, duration)
    if cues:  # the first cue starts with its scene, or earlier only when there is no time left (rule 8)
        first = round(ordered[0].start, 3)
        assert cues[0][0] == pytest.approx(first) or (
            duration is not None and cues[0][0] < first and duration - first < len(cues) * MIN_DURATION), cues


def _seconds(stamp: str) -> float:
    h, m, s = stamp.replace(",", ".").split(":")
    return round(int(h) * 3600 + int(m) * 60 + float(s), 3)


def read_srt(path: Path) -> list[tuple[float, float, str]]:
    parsed = list(srt.parse(path.read_text(encoding="utf-8")))
    assert [p.index for p in parsed] == list(range(1, len(parsed) + 1))
    return [(p.start.total_seconds(), p.end.total_seconds(), p.content) for p in parsed]


def read_vtt(path: Path) -> list[tuple[float, float, str]]:
    return [(_seconds(c.start), _seconds(c.end), html.unescape(c.text)) for c in webvtt.read(str(path)).captions]


def read_ttml(path: Path) -> list[tuple[float, float, str]]:
    """Read back by ttconv's IMSC reader (tests/test_export_ttml.py)."""
    from test_export_ttml import read_back

    return [(float(b), float(e), text) for b, e, text in read_back(path.read_text(encoding="utf-8"))]


def laid_out(cues: list[Cue]) -> list[tuple[float, float, str]]:
    return [(c.start, c.end, c.text) for c in cues]


# --- layout -----------------------------------------------------------------------------------

def test_layout_rules():
    cues = layout_cues(CUES)
    check_rules(laid_out(cues), CUES, None)
    assert cues[0] == Cue(0.0, 2.5, "a man sings on a stage")
    # 0.5 s is too short: shown with the next scene, one caption a line, for 1 s (into the gap after it)
    assert cues[1] == Cue(2.5, 3.5, "a short flash\nune femme chante à l'opéra — 日本語のテレビ")
    long_pages = [c for c in cues if 5.0 <= c.start < 20.0]
    assert len(long_pages) == 2 and long_pages[0].start == 5.0 and long_pages[-1].end == 18.2  # same caption twice
    assert " ".join(c.text.replace("\n", " ") for c in long_pages) == LONG  # every word kept
    assert all(c.end - c.start >= 2.0 for c in long_pages)
    short = [c for c in cues if 20.0 <= c.start < 3000]
    assert [(c.start, c.end) for c in short] == [(20.0, 21.0), (21.0, 22.0)]  # 1 s per cue, into the gap
    assert " ".join(c.text.replace("\n", " ") for c in short) == LONG
    assert cues[-1] == Cue(3725.5, 3731.25, "a dog & a cat <live>")


def test_layout_edges():
    assert balance("a man sings".split()) == ["a man sings"]
    top, bottom = balance(("word " * 12).split())
    assert len(top) <= len(bottom) <= MAX_LINE and abs(len(top) - len(bottom)) <= 5
    assert balance(["x" * 40, "y" * 40, "zzz"]) is None
    assert all(len(line) <= MAX_LINE for page in pages("x" * 200) for line in page)  # unbreakable word
    assert "".join("".join(page) for page in pages("x" * 200)) == "x" * 200
    overlapping = [Cue(0, 5, "first"), Cue(3, 6, "second"), Cue(3, 3.0001, "gone"), Cue(7, 7.5, "   ")]
    # an overlap is cut at the next start; the scene with nothing left joins the next one
    assert layout_cues(overlapping) == [Cue(0, 3, "first"), Cue(3, 6, "gone\nsecond")]
    assert layout_cues([Cue(0, 0.2, "a --> b")]) == [Cue(0, 1.0, "a \u2192 b")]
    assert layout_cues([]) == [] and layout_cues([Cue(0, 1, " \n ")]) == []


def test_short_scenes_merge_and_nothing_is_dropped():
    # the last scene, 0.3 s with no time after it, joins the cue before it
    assert layout_cues([Cue(0, 5, "a man rides"), Cue(5, 5.3, "a dog runs")], duration=5.3) == \
        [Cue(0, 5.3, "a man rides\na dog runs")]
    # short scenes in a row: joined until there is 1 s to read them, captions apart by "; "
    assert layout_cues([Cue(0, 0.3, "a man"), Cue(0.3, 0.6, "sings"), Cue(0.6, 0.9, "a dog"), Cue(0.9, 5, "x")]) == \
        [Cue(0, 5, "a man; sings\na dog; x")]  # lines broken between captions where they can be
    assert layout_cues([Cue(0, 0.3, "He sings."), Cue(0.3, 0.6, "A dog runs."), Cue(0.6, 2, "Rain")]) == \
        [Cue(0, 2, "He sings.\nA dog runs. Rain")]  # no "; " after a caption's own punctuation
    # the same caption in consecutive scenes (or less than 1 s apart) is one cue
    assert layout_cues([Cue(0, 0.5, "a man rides"), Cue(0.5, 0.9, "a man rides"), Cue(1.5, 2, "a man rides")]) == \
        [Cue(0, 2, "a man rides")]
    assert len(layout_cues([Cue(0, 2, "a man rides"), Cue(3, 5, "a man rides")])) == 2  # 1 s apart: two cues
    # a long caption in a short scene before the end: split, and the whole cue moves on past the next
    # short scene until each part gets 1 s
    cues = layout_cues([Cue(0, 0.5, LONG), Cue(0.5, 0.8, "a dog"), Cue(0.8, 4, "a cat")], duration=4)
    check_rules(laid_out(cues), [Cue(0, 0.5, LONG), Cue(0.5, 0.8, "a dog"), Cue(0.8, 4, "a cat")], 4)
    assert cues[0].start == 0 and cues[-1].end == 4 and all(c.end - c.start >= 1 for c in cues)


def test_recording_shorter_than_its_text():
    """The one case of cues under 1 s: no time for 1 s a cue before the recording ends."""
    assert layout_cues([Cue(0, 0.2, "last")], duration=0.5) == [Cue(0, 0.5, "last")]  # to the end, not past it
    cues = layout_cues([Cue(0, 0.3, LONG), Cue(0.3, 0.6, "a dog runs")], duration=0.6)
    check_rules(laid_out(cues), [Cue(0, 0.3, LONG), Cue(0.3, 0.6, "a dog runs")], 0.6)
    assert len(cues) == 3 and cues[0].start == 0 and cues[-1].end == 0.6
    assert all(c.end - c.start >= 0.15 for c in cues)  # spread over the time there is


def test_real_scene_times_of_bikes():
    """bikes.mp4's scenes as they were before the last-scene rule, with a 0.04 s one: cues of 0.32
    and 0.04 s were written; now those scenes join a neighbour's cue."""
    captions = ["a man rides a bike", LONG, "a street with cars", "a man rides a bike", "people walk",
                "a red car", "a street at night with lights and a man walking away from the camera"]
    source = [Cue(a, b, text) for (a, b), text in zip(BIKES, captions)]
    cues = layout_cues(source, duration=10.0)
    check_rules(laid_out(cues), source, 10.0)
    assert min(c.end - c.start for c in cues) >= 1.0 and cues[-1].end == 10.0
    # 9.68-9.72 and 9.72-10.0 join 7.48-9.68 in one cue, split in 2 (its text needs 2 cues of 2 lines)
    assert [c.text for c in cues if c.start >= 7.48] == [
        "people walk\na red car", "a street at night with lights and\na man walking away from the camera"]
    assert cues[-2].start == 7.48
    # a caption longer than a cue does not share its cues with the next scene's caption
    assert [c.text for c in cues if 1.2 <= c.start < 5.48][-1] == "a street with cars"


scene_lists = st.lists(
    st.tuples(st.floats(0, 100, allow_nan=False), st.floats(0.001, 20, allow_nan=False),
              st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)),
    max_size=12,
).map(lambda rows: [Cue(start, start + length, text) for start, length, text in rows])


@settings(max_examples=EXAMPLES, deadline=None)
@given(scene_lists, st.one_of(st.none(), st.floats(0.1, 130, allow_nan=False)))
def test_layout_properties(source, duration):
    check_rules(laid_out(layout_cues(source, duration)), source, duration)


WORDS = st.text(st.sampled_from("abcdefghij klmnop &<>;.-é日本"), min_size=1, max_size=160)
# scenes as the indexer stores them: from 0, one after the other, up to the recording's end
tiled = st.lists(st.tuples(st.floats(0.01, 8, allow_nan=False), WORDS), min_size=1, max_size=10).map(
    lambda rows: [Cue(sum(r[0] for r in rows[:i]), sum(r[0] for r in rows[:i + 1]), text, ("tag",))
                  for i, (_, text) in enumerate(rows)])


@settings(max_examples=max(20, EXAMPLES // 4), deadline=None)
@given(tiled)
def test_every_format_follows_the_rules(source):
    """SRT and WebVTT as their parsers read them back, and JSON: the rules hold on each."""
    duration = source[-1].end
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        check_rules(read_srt(write_srt(source, folder / "a.srt", duration)), source, duration)
        check_rules(read_vtt(write_vtt(source, folder / "a.vtt", duration)), source, duration)
        check_rules(read_ttml(TTMLWriter().write(source, folder / "a.ttml", duration)), source, duration)
        rows = json.loads(write_json(source, folder / "a.json").read_text(encoding="utf-8"))
    # JSON: one row per scene, exact times to the millisecond, whole caption, tags
    assert rows == [{"start": round(c.start, 3), "end": round(c.end, 3), "text": c.text, "tags": ["tag"], "annotations": []}
                    for c in source]
    assert _shown_in_order("".join(_chars(r["text"]) for r in rows), [_chars(c.text) for c in source])
    assert all(a["end"] <= b["start"] for a, b in zip(rows, rows[1:])) and rows[-1]["end"] <= round(duration, 3)


# --- the writers ------------------------------------------------------------------------------

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
    check_rules(read_srt(path), CUES, None)


def test_vtt_is_valid(tmp_path: Path):
    path = write_vtt(CUES, tmp_path / "out.vtt")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("WEBVTT\n\n") and "a dog &amp; a cat &lt;live&gt;" in text
    parsed = webvtt.read(str(path))
    expected = layout_cues(CUES)
    assert len(parsed.captions) == len(expected)
    assert parsed.captions[1].text == expected[1].text and parsed.captions[-1].start == "01:02:05.500"
    assert [_seconds(c.start) for c in parsed.captions[:3]] == [0.0, 2.5, 5.0]
    check_rules(read_vtt(path), CUES, None)


@pytest.mark.usefixtures("needs_ffmpeg")
@pytest.mark.parametrize("writer", [SRTWriter(), VTTWriter()], ids=["srt", "vtt"])
def test_ffmpeg_reads_the_track(tmp_path: Path, writer):
    path = writer.write(CUES, tmp_path / f"out.{writer.extension}")
    proc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "srt", "pipe:1"],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr.decode(errors="replace")
    converted = list(srt.parse(proc.stdout.decode("utf-8")))
    expected = layout_cues(CUES)
    assert len(converted) == len(expected)
    assert converted[1].content == expected[1].text  # UTF-8 survived
    assert converted[-1].start.total_seconds() == 3725.5


def test_json_keeps_scene_times_full_text_and_tags(tmp_path: Path):
    cues = [*CUES, Cue(0.1 + 0.2, 3.0000000000000004, "noise", ("person", "stage"))]
    raw = write_json(cues, tmp_path / "out.json").read_text(encoding="utf-8")
    rows = json.loads(raw)
    assert len(rows) == len(cues)  # one row per scene, not laid out
    assert {"start": 5.0, "end": 17.0, "text": LONG, "tags": [], "annotations": []} in rows
    assert {"start": 0.3, "end": 3.0, "text": "noise", "tags": ["person", "stage"], "annotations": []} in rows
    assert not re.search(r"\d\.\d{4,}", raw)  # times to the millisecond, no float noise
    assert [r["start"] for r in rows] == sorted(r["start"] for r in rows)


def test_writers_differ_only_in_attributes():
    assert [(w.extension, w.decimal_marker, w.numbered) for w in (SRTWriter, VTTWriter, JSONWriter)] == \
        [("srt", ",", True), ("vtt", ".", False), ("json", ".", False)]
    assert SRTWriter().format_timestamp(3725.5004) == "01:02:05,500"
    assert VTTWriter().format_timestamp(0.0006) == "00:00:00.001"
    assert isinstance(get_writer(".VTT"), VTTWriter) and isinstance(get_writer("webvtt"), VTTWriter)
    with pytest.raises(TvcaptionError, match="unknown export format"):
        get_writer("ass")
    assert SRTWriter().format([]) == "" and VTTWriter().format([]) == "WEBVTT\n\n"


# --- file names -------------------------------------------------------------------------------

def test_output_names():
    names = output_names(["/tv/bikes.mkv", "/tv/bikes.mxf", "/tv/sport.ts"], "srt")
    assert names == {"/tv/bikes.mkv": "bikes.mkv.srt", "/tv/bikes.mxf": "bikes.mxf.srt", "/tv/sport.ts": "sport.srt"}
    names = output_names(["/tv/monday/news.ts", "/tv/tuesday/news.ts", "/tv/news.mxf"], "vtt")
    assert names == {"/tv/monday/news.ts": "monday_news.ts.vtt", "/tv/tuesday/news.ts": "tuesday_news.ts.vtt",
                     "/tv/news.mxf": "news.mxf.vtt"}
    names = output_names(["/a/x/news.ts", "/b/x/news.ts"], "srt")  # same folder name too: a hash, last resort
    assert len(set(names.values())) == 2
    assert all(re.fullmatch(r"x_news\.ts-[0-9a-f]{8}\.srt", n) for n in names.values())
    names = output_names(["/tv/News.ts", "/tv/news.mxf"], "srt")  # apart on case-insensitive file systems too
    assert names == {"/tv/News.ts": "News.ts.srt", "/tv/news.mxf": "news.mxf.srt"}
    assert output_names(["/tv/bikes.mkv"], "json") == {"/tv/bikes.mkv": "bikes.json"}


def test_names_are_sanitised():
    assert safe_name("evening\nnews\r\t\x00\x7f\u2028x") == "evening_news_____x"
    assert safe_name("a/b\\c") == "a_b_c" and safe_name("") == "_" and safe_name("日本語 news") == "日本語 news"
    names = output_names(["/tv/evening\nnews.ts", "/tv/back\\slash.ts", "/tv/" + "x" * 300 + ".ts"], "srt")
    assert names["/tv/evening\nnews.ts"] == "evening_news.srt" and names["/tv/back\\slash.ts"] == "back_slash.srt"
    assert all(len(n.encode()) <= 210 and "/" not in n for n in names.values())


# --- from the database ------------------------------------------------------------------------

RECORDINGS = {
    "/archive/a/news.ts": ["a man sings", "a dog runs"],
    "/archive/b/news.ts": ["a cat sleeps"],
    "/archive/sport.mxf": ["players run on a field"],
    "/archive/bikes.mkv": ["a man rides a bike"],
    "/archive/bikes.mxf": ["a man rides a bike"],
    "/archive/odd\nname.ts": ["a newline in the name"],
}


@pytest.fixture
def store(tmp_path: Path):
    store = Store(connect(f"sqlite:///{tmp_path / 'tv.db'}"))
    for path, captions in RECORDINGS.items():
        claim = store.claim(path, "h", "w", {"duration": 10.0})
        store.save_result(claim.recording_id, [
            annotated(2.0 * i, 2.0 * i + 2.0, 50 * i, 50 * i + 50, c, tags=[("best", 0.9), ("tag", 0.5)])
            for i, c in enumerate(captions)], "m")
    claim = store.claim("/archive/short.ts", "h", "w", {"duration": 5.3})  # a 0.3 s last scene, a 0.04 s one
    store.save_result(claim.recording_id, [
        annotated(0.0, 0.04, 0, 1, "a flash"), annotated(0.04, 5.0, 1, 125, LONG),
        annotated(5.0, 5.3, 125, 132, "a dog runs away")], "m")
    store.mark_failed("/archive/broken.ts", "VideoError: no video stream\ntraceback...")
    yield store
    store.engine.dispose()


def test_export_recording(store: Store, tmp_path: Path):
    out = export_recording(store, "/archive/a/news.ts", "srt", tmp_path / "subs")
    assert out == tmp_path / "subs" / "a_news.ts.tvcaption.srt"  # the name export_all gives it: another news.ts exists
    parsed = list(srt.parse(out.read_text(encoding="utf-8")))
    assert [(p.start.total_seconds(), p.end.total_seconds(), p.content) for p in parsed] == \
        [(0.0, 2.0, "a man sings"), (2.0, 4.0, "a dog runs")]
    out = export_recording(store.engine, "/archive/sport.mxf", "vtt", tmp_path)
    assert out.name == "sport.tvcaption.vtt" and webvtt.read(str(out)).captions[0].text == "players run on a field"
    with pytest.raises(TvcaptionError, match="not in the database"):
        export_recording(store, "/archive/missing.ts", "srt", tmp_path)
    with pytest.raises(TvcaptionError, match="status failed: VideoError: no video stream\\)"):
        export_recording(store, "/archive/broken.ts", "srt", tmp_path)


@pytest.mark.parametrize("fmt", ["srt", "vtt", "ttml", "json"])
def test_export_all_names_and_rules(store: Store, tmp_path: Path, fmt: str):
    written = export_all(store, fmt, tmp_path / "all")
    names = sorted(p.name for p in written)
    assert names == sorted(f"{n}.tvcaption.{fmt}" for n in ("a_news.ts", "b_news.ts", "sport", "bikes.mkv", "bikes.mxf",
                                                   "odd_name", "short"))
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == names  # no temporary files left
    done = store.recordings(status="done")
    by_name = {name: r for r in done for p, name in output_names([x.path for x in done], f"tvcaption.{fmt}").items() if p == r.path}
    for path in written:
        recording = by_name[path.name]
        scenes = store.scenes_of(recording.path)
        source = [Cue(s.start, s.end, s.caption) for s in scenes]
        if fmt == "json":
            rows = json.loads(path.read_text(encoding="utf-8"))
            assert rows == [{"start": s.start, "end": s.end, "text": s.caption, "tags": list(s.tags),
                             "annotations": [a.to_json() for a in s.annotations]}
                            for s in scenes]
            assert all(r["tags"][:1] == ["best"] for r in rows if r["tags"])  # as the analyser ordered them: most probable first
            continue
        cues = {"srt": read_srt, "vtt": read_vtt, "ttml": read_ttml}[fmt](path)
        check_rules(cues, source, recording.duration)
        if recording.path == "/archive/short.ts":
            assert min(end - start for start, end, _ in cues) >= 1.0 and cues[-1][1] == 5.3
        assert export_recording(store, recording.path, fmt, tmp_path / "one") == tmp_path / "one" / path.name


def test_export_into_a_file_is_one_line(store: Store, tmp_path: Path):
    not_a_folder = tmp_path / "subs.srt"
    not_a_folder.write_text("")
    for call in (lambda: export_all(store, "srt", not_a_folder),
                 lambda: export_recording(store, "/archive/sport.mxf", "srt", not_a_folder),
                 lambda: export_all(store, "srt", not_a_folder / "inner")):
        with pytest.raises(TvcaptionError) as err:
            call()
        message = str(err.value)
        assert "\n" not in message and str(not_a_folder) in message and "not a folder" in message
    assert not_a_folder.read_text() == ""


# --- reviewed scenes only -------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["srt", "vtt", "ttml", "json"])
def test_reviewed_only_exports_the_corrected_scenes_alone(store: Store, tmp_path: Path, fmt: str):
    ids = {r.path: r.id for r in store.recordings(status="done")}
    store.add_correction(ids["/archive/a/news.ts"], 1, "a brown dog runs across the lawn", "ann")
    store.add_correction(ids["/archive/short.ts"], 0, "a flash of light", "ann")
    store.add_correction(ids["/archive/short.ts"], 0, "lightning over the hills", "bob")  # the latest counts
    unreviewed: list[str] = []
    written = export_all(store, fmt, tmp_path, reviewed_only=True, unreviewed=unreviewed)
    assert sorted(p.name for p in written) == sorted([f"a_news.ts.tvcaption.{fmt}", f"short.tvcaption.{fmt}"])
    assert sorted(unreviewed) == sorted(set(RECORDINGS) - {"/archive/a/news.ts"})
    by_name = {p.name: p for p in written}
    expected = {f"a_news.ts.tvcaption.{fmt}": [(2.0, 4.0, "a brown dog runs across the lawn")],
                f"short.tvcaption.{fmt}": [(0.0, 0.04, "lightning over the hills")]}
    for name, scenes in expected.items():
        path = by_name[name]
        if fmt == "json":
            rows = json.loads(path.read_text(encoding="utf-8"))
            assert [(r["start"], r["end"], r["text"]) for r in rows] == scenes
            assert [a["text"] for a in rows[0]["annotations"] if a["analyser"] == "review"][-1] == scenes[0][2]
            continue
        cues = {"srt": read_srt, "vtt": read_vtt, "ttml": read_ttml}[fmt](path)
        check_rules(cues, [Cue(*s) for s in scenes], 10.0 if "news" in name else 5.3)
        assert " ".join(t.replace("\n", " ") for _, _, t in cues) == scenes[0][2]  # nothing unreviewed
        assert cues[0][0] == pytest.approx(scenes[0][0])
    one = export_recording(store, "/archive/a/news.ts", fmt, tmp_path / "one", reviewed_only=True)
    assert one.read_bytes() == by_name[f"a_news.ts.tvcaption.{fmt}"].read_bytes()
    with pytest.raises(TvcaptionError, match="no reviewed scene"):
        export_recording(store, "/archive/sport.mxf", fmt, tmp_path / "one", reviewed_only=True)
    assert not (tmp_path / "one" / f"sport.tvcaption.{fmt}").exists()


def test_reviewed_only_through_the_cli(store: Store, tmp_path: Path):
    from typer.testing import CliRunner

    from tvcaption.cli import app

    ids = {r.path: r.id for r in store.recordings(status="done")}
    store.add_correction(ids["/archive/sport.mxf"], 0, "two teams play football", "ann")
    db = ["--db", str(store.engine.url.database)]
    runner = CliRunner()
    result = runner.invoke(app, ["export", "--all", "--reviewed-only", "--out", str(tmp_path / "a"), *db])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["sport.tvcaption.srt"]
    assert "6 recording(s) without a reviewed scene not written" in result.stderr
    assert [t for _, _, t in read_srt(tmp_path / "a" / "sport.tvcaption.srt")] == ["two teams play football"]
    result = runner.invoke(app, ["export", "/archive/bikes.mkv", "--reviewed-only", "--out", str(tmp_path / "b"), *db])
    assert result.exit_code == 1 and "no reviewed scene" in result.stderr and "Traceback" not in result.output
    full = runner.invoke(app, ["export", "/archive/sport.mxf", "--out", str(tmp_path / "c"), *db])
    assert full.exit_code == 0 and [t for _, _, t in read_srt(tmp_path / "c" / "sport.tvcaption.srt")] == ["two teams play football"]


def test_exports_never_take_the_recordings_own_subtitle_names(store: Store, tmp_path: Path):
    """Exported from the recordings' folder, NAME.srt would overwrite the recording's own subtitles
    (and the next index would read the descriptions back as speech): exports are NAME.tvcaption.*."""
    from tvcaption.subtitles import find_sidecars

    own = tmp_path / "sport.srt"
    own.write_bytes("1\n00:00:01,000 --> 00:00:02,000\nΚαλημέρα\n\n".encode())
    (tmp_path / "sport.mxf").write_bytes(b"")
    for fmt in ("srt", "vtt", "ttml", "json"):
        export_recording(store, "/archive/sport.mxf", fmt, tmp_path)
        export_all(store, fmt, tmp_path)
    assert own.read_text(encoding="utf-8").endswith("Καλημέρα\n\n")
    assert (tmp_path / "sport.tvcaption.srt").is_file()
    assert find_sidecars(tmp_path / "sport.mxf", [".mxf"]) == [(own, None)]
