"""Subtitle and speech text: sidecars beside a recording and text streams inside it become
searchable ``speech`` annotations of the scenes their cues overlap.

The media are made here from the real clip ``bikes.mp4`` (10 s, cuts at 1.2, 3.04, 5.48, 7.48
and 9.68 s) with ffmpeg: SRT muxed as mov_text (MP4), subrip/ass/webvtt (MKV), an MPEG-TS
starting at 1 h with a DVB bitmap stream, and a PGS stream in MKV (FFmpeg cannot render text to
bitmaps, so the bitmap streams are made from a tiny PGS file written here and, for DVB,
transcoded bitmap-to-bitmap by ffmpeg's dvbsub encoder).
"""

from __future__ import annotations

import json
import logging
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tvcaption.analysers.base import SceneInput
from tvcaption.scene import Scene
from tvcaption.subtitles import (
    Cue,
    clean_text,
    decode_text,
    find_sidecars,
    parse_ass,
    parse_srt_vtt,
    parse_time,
    read_sidecar,
    read_streams,
)

pytest_plugins = ["toymodel"]

SRT = """1
00:00:00,200 --> 00:00:01,000
<i>Hello</i> cyclists

2
00:00:03,200 --> 00:00:05,200
{\\an8}The bicycle race
starts  now

3
00:00:05,300 --> 00:00:06,000
Spokes and pedals
"""
VTT = """WEBVTT

NOTE a comment --> that is not a cue

intro
00:00.200 --> 00:01.000 align:start
<v Anna>Bonjour</v> &amp; salut

00:03.200 --> 00:05.200
<c.loud>La course</c> <00:04.000>commence
"""
ASS = """[Script Info]
ScriptType: v4.00+

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,0:00:03.20,0:00:05.20,Default,,0,0,0,,{\\pos(10,20)\\b1}Tandem{\\b0} racing,\\Nfast
Comment: 0,0:00:06.00,0:00:07.00,Default,,0,0,0,,not shown
"""


class FakeContext:
    class config:
        class index:
            extensions = (".mp4", ".mkv", ".ts")


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, capture_output=True, timeout=120)


def pgs_file(out: Path, shows: tuple[tuple[float, float], ...] = ((1.0, 3.0), (5.0, 7.0))) -> Path:
    """A minimal valid PGS (.sup) subtitle file: a 16x4 white box shown at each (start, end)."""
    def segment(kind: int, payload: bytes, pts: float) -> bytes:
        return b"PG" + struct.pack(">IIBH", int(pts * 90000), 0, kind, len(payload)) + payload

    def display(pts: float, show: bool) -> bytes:
        objects = struct.pack(">HBBHH", 0, 0, 0, 100, 200) if show else b""
        data = segment(0x16, struct.pack(">HHBHBBBB", 640, 272, 0x10, 1, 0x80 if show else 0, 0, 0, int(show)) + objects, pts)
        data += segment(0x17, struct.pack(">BBHHHH", 1, 0, 100, 200, 16, 4), pts)
        if show:
            rle = bytes([0x00, 0x80 | 16, 0x01, 0x00, 0x00]) * 4  # 4 lines of 16 pixels of colour 1
            data += segment(0x14, bytes([0, 0, 1, 235, 128, 128, 255]), pts)
            data += segment(0x15, struct.pack(">HBB", 0, 0, 0xC0) + (len(rle) + 4).to_bytes(3, "big")
                            + struct.pack(">HH", 16, 4) + rle, pts)
        return data + segment(0x80, b"", pts)

    out.write_bytes(b"".join(display(a, True) + display(b, False) for a, b in shows))
    return out


def speech_config(tmp_path: Path, analysers=("speech",)):
    from tvcaption.config import Config, with_overrides

    config = with_overrides(Config(), "database", url=f"sqlite:///{tmp_path / 'speech.db'}")
    config = with_overrides(config, "features", device="cpu", threads=1)
    return with_overrides(config, "index", analysers=tuple(analysers))


def speech_of(path: Path, scenes: list[tuple[float, float]], caplog=None):
    """What SpeechAnalyser says of these scenes of the recording at ``path``."""
    from tvcaption.analysers.speech import SpeechAnalyser
    from tvcaption.video import probe

    analyser = SpeechAnalyser(FakeContext())
    analyser.start_recording(probe(path))
    batch = [SceneInput(Scene(a, b, 0, 1), np.zeros(1)) for a, b in scenes]
    return analyser.analyse(batch)


# ---------------------------------------------------------------- parsing, no media

def test_times_text_and_formats_parse():
    assert parse_time("01:02:03,450") == pytest.approx(3723.45)
    assert parse_time("02:03.450") == pytest.approx(123.45)
    assert parse_time("1:02:03.45") == pytest.approx(3723.45)  # ASS centiseconds
    with pytest.raises(ValueError):
        parse_time("00:00:61,000")
    cues, problems = parse_srt_vtt(SRT)
    assert not problems and [(s, e) for s, e, _ in cues] == [(0.2, 1.0), (3.2, 5.2), (5.3, 6.0)]
    assert [clean_text(t) for _, _, t in cues] == ["Hello cyclists", "The bicycle race starts now", "Spokes and pedals"]
    cues, problems = parse_srt_vtt(VTT)
    assert not problems and [clean_text(t) for _, _, t in cues] == ["Bonjour & salut", "La course commence"]
    cues, problems = parse_ass(ASS)
    assert not problems and cues[0][:2] == (3.2, 5.2) and clean_text(cues[0][2], ass=True) == "Tandem racing, fast"
    assert len(cues) == 1  # Comment lines are not shown


def test_encodings():
    text = "1\n00:00:01,000 --> 00:00:02,000\nCafé crème\n"
    for data in (text.encode("utf-8"), b"\xef\xbb\xbf" + text.encode("utf-8"), text.encode("utf-16"),
                 text.encode("utf-32")):
        assert decode_text(data) == (text, None)
    assert decode_text(text.encode("cp1252")) == (text, "not UTF-8; read as Windows-1252")
    decoded, assumed = decode_text(text.encode("utf-16-le"))
    assert decoded == text and "UTF-16-LE without a byte-order mark" == assumed


LEGACY = {  # language: (its legacy code page, a subtitle in it)
    "el": ("cp1253", "Καλημέρα Ελλάδα, η Αθήνα είναι όμορφη σήμερα"),
    "ru": ("cp1251", "Добрый вечер, сегодня в Москве идёт снег"),
    "ar": ("cp1256", "مساء الخير، الطقس جميل اليوم في القاهرة"),
    "he": ("cp1255", "ערב טוב, מזג האוויר יפה היום"),
    "pl": ("cp1250", "Dobry wieczór, dziś pogoda jest piękna"),
    "zh": ("gb18030", "晚上好，今天北京天气很好"),
    "ja": ("shift_jis", "こんばんは、今日は東京で雪が降っています"),
}


@pytest.mark.parametrize("language", sorted(LEGACY))
def test_legacy_code_pages_by_the_file_names_language(tmp_path, language):
    """Subtitles from before UTF-8 are in their language's code page: the name (NAME.el.srt) says which."""
    codec, said = LEGACY[language]
    (tmp_path / "news.ts").write_bytes(b"")
    (tmp_path / f"news.{language}.srt").write_bytes(f"1\n00:00:01,000 --> 00:00:03,000\n{said}\n\n".encode(codec))
    ((path, found_language),) = find_sidecars(tmp_path / "news.ts", (".ts",))
    (cue,) = read_sidecar(path, found_language, 10.0)
    assert cue.text == said and cue.language == language


@pytest.mark.parametrize("language", ["el", "ru", "zh", "ja"])
def test_a_non_latin_code_page_without_a_language_is_guessed(language):
    codec, said = LEGACY[language]
    text = f"1\n00:00:01,000 --> 00:00:03,000\n{said}\n\n2\n00:00:04,000 --> 00:00:05,000\n{said}\n"
    decoded, assumed = decode_text(text.encode(codec))
    assert decoded == text and "guessed" in assumed


@pytest.mark.parametrize("codec, said", [("cp1253", "Καλημέρα Ελλάδα"), ("cp1253", "Η Αθήνα είναι όμορφη σήμερα"),
                                         ("cp1251", "Добрый вечер"), ("cp1251", "Добрий вечір, Київ")])
def test_one_short_line_is_guessed_too(codec, said):
    """charset-normalizer alone took a one-line Greek file for mac_latin2 (found by a trial); a wrong
    code page gives words mixed case and symbols between letters."""
    text = f"1\n00:00:01,000 --> 00:00:03,000\n{said}\n\n"
    decoded, assumed = decode_text(text.encode(codec))
    assert decoded == text and "guessed" in assumed
    latin = "1\n00:00:01,000 --> 00:00:03,000\nGrüße aus München, très beau café\n\n"
    assert decode_text(latin.encode("cp1252")) == (latin, "not UTF-8; read as Windows-1252")


def test_sidecars_are_found_by_name(tmp_path):
    for name in ("show.mp4", "show.srt", "show.en.srt", "show.fr.vtt", "show.pt-BR.forced.srt", "show.ASS",
                 "show.part2.mp4", "show.part2.srt", "show.eng.srt", "other.srt", "show.srt.bak", "showtime.srt",
                 "show.x1.srt", "show.ad.srt", "show.AD.vtt", "show.en.ad.srt"):
        (tmp_path / name).write_text("")
    found = {p.name: lang for p, lang in find_sidecars(tmp_path / "show.mp4", (".mp4", ".ts"))}
    assert found == {"show.srt": None, "show.en.srt": "en", "show.fr.vtt": "fr", "show.pt-BR.forced.srt": "pt-br",
                     "show.ASS": None, "show.eng.srt": "en"}  # no description track (.ad.) taken as speech
    assert [p.name for p, _ in find_sidecars(tmp_path / "show.part2.mp4", (".mp4",))] == ["show.part2.srt"]
    assert find_sidecars(tmp_path / "nowhere" / "x.mp4") == []


@pytest.mark.parametrize("content, problem", [
    ("1\n00:00:01,000 --> 00:00:02,000\nCafé crème\n".encode("cp1252"), "not UTF-8; read as Windows-1252"),
    ((b"1\n00:00:01,000 -> 00:00:02,000\nlost\n\n2\n00:00:03,000 --> 00:00:02,000\nbackwards\n\n"
      b"3\n00:00:04,000 --> 00:00:05,000\nkept\n"), "2 broken timing lines skipped (line 2, 6)"),
    (b"1\n00:00:01,000 --> 00:00:02,000\nkept\n\n2\n00:20:00,000 --> 00:20:02,000\nlate\n",
     "1 cue past the end of the recording (10.0 s) left out"),
    (b"", "empty file"),
    (b"this is not a subtitle file\n", "no subtitle cues found"),
])
def test_a_bad_sidecar_is_one_warning_naming_it(tmp_path, caplog, content, problem):
    side = tmp_path / "rec.en.srt"
    side.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="tvcaption.subtitles"):
        cues = read_sidecar(side, "en", 10.0)
    (record,) = caplog.records
    assert str(side) in record.getMessage() and problem in record.getMessage(), record.getMessage()
    assert "\n" not in record.getMessage()
    assert all(c.end <= 10.0 and c.source == "rec.en.srt" and c.language == "en" for c in cues)
    if b"kept" in content or b"Caf" in content:
        assert cues and cues[0].text in ("kept", "Café crème")


def test_cues_go_to_every_scene_they_overlap(tmp_path):
    from tvcaption.analysers.speech import SpeechAnalyser

    analyser = SpeechAnalyser(FakeContext())
    analyser._sources = []
    cues = [Cue(0.2, 1.0, "one", "a.srt", "en"), Cue(2.5, 3.5, "across the cut", "a.srt", "en"), Cue(8.0, 8.0, "blip", "a.srt")]
    analyser._sources = [("a.srt", cues, [c.start for c in cues], 1.0)]
    first, second, third = analyser.analyse([SceneInput(Scene(a, b, 0, 1), np.zeros(1))
                                            for a, b in ((0.0, 3.0), (3.0, 6.0), (6.0, 9.0))])
    assert [a.text for a in first] == ["one across the cut"] and [a.text for a in second] == ["across the cut"]
    (note,) = first
    assert note.analyser == "speech" and note.kind == "speech" and note.field == "text" and note.score is None
    assert note.data["cues"][1] == {"start": 2.5, "end": 3.5, "text": "across the cut", "source": "a.srt", "language": "en"}
    assert [a.text for a in third] == ["blip"]
    # a cut 1 ms into a cue (scene boundaries fall on frames: 1.001 s at 29.97 fps) does not give it
    # to the scene before; a short cue wholly inside a scene is still that scene's
    cues = [Cue(1.0, 3.0, "after the cut", "a.srt"), Cue(4.0, 4.05, "short", "a.srt")]
    analyser._sources = [("a.srt", cues, [c.start for c in cues], 2.0)]
    first, second = analyser.analyse([SceneInput(Scene(a, b, 0, 1), np.zeros(1)) for a, b in ((0.0, 1.001), (1.001, 5.0))])
    assert first == [] and [a.text for a in second] == ["after the cut short"]


# ---------------------------------------------------------------- real media

@pytest.fixture
def bikes(scenes_dir, needs_ffmpeg) -> Path:
    return scenes_dir / "bikes.mp4"


@pytest.mark.parametrize("container, codec, language, expect", [
    ("mp4", "mov_text", "eng", "en"), ("mkv", "srt", "fra", "fr"), ("mkv", "ass", None, None), ("mkv", "webvtt", None, None),
])
def test_text_streams_inside_the_container(bikes, tmp_path, container, codec, language, expect):
    (tmp_path / "in.srt").write_text(SRT)
    out = tmp_path / f"sub.{container}"
    meta = ["-metadata:s:s:0", f"language={language}"] if language else []
    ffmpeg("-i", str(bikes), "-i", str(tmp_path / "in.srt"), "-map", "0:v", "-map", "1", "-c:v", "copy",
           "-c:s", codec, *meta, str(out))
    cues = read_streams(out, 0.0, 10.0)
    assert [c.text for c in cues] == ["Hello cyclists", "The bicycle race starts now", "Spokes and pedals"]
    assert [(round(c.start, 3), round(c.end, 3)) for c in cues] == [(0.2, 1.0), (3.2, 5.2), (5.3, 6.0)]
    assert {c.source for c in cues} == {"stream 1"} and {c.language for c in cues} == {expect}


def test_stream_times_are_from_the_recording_start(bikes, tmp_path):
    """A Matroska file whose timestamps start at 1 h: its cues still start at 0.2 s."""
    (tmp_path / "in.srt").write_text(SRT)
    out = tmp_path / "late.mkv"
    ffmpeg("-i", str(bikes), "-i", str(tmp_path / "in.srt"), "-map", "0:v", "-map", "1", "-c:v", "copy", "-c:s", "srt",
           "-output_ts_offset", "3600", str(out))
    (first, *_), _ = speech_of(out, [(0.0, 3.0), (3.0, 10.0)])
    assert first.data["cues"][0]["start"] == pytest.approx(0.2, abs=0.01) and first.text == "Hello cyclists"


def test_stream_cues_past_the_end_are_one_warning_line(bikes, tmp_path, caplog):
    """As for sidecars: cues after the last video frame are left out, and the user is told."""
    (tmp_path / "in.srt").write_text(SRT + "\n4\n00:00:12,000 --> 00:00:13,000\nAfter the race\n")
    out = tmp_path / "long.mkv"
    ffmpeg("-i", str(bikes), "-i", str(tmp_path / "in.srt"), "-map", "0:v", "-map", "1", "-c:v", "copy", "-c:s", "srt",
           str(out))
    with caplog.at_level(logging.WARNING, logger="tvcaption.subtitles"):
        cues = read_streams(out, 0.0, 10.0)
    assert [c.text for c in cues][-1] == "Spokes and pedals"
    (record,) = caplog.records
    assert record.getMessage() == f"{out}: 1 cue of its subtitle streams past the end of the video (10.0 s) left out"


def test_bitmap_streams_are_skipped_in_one_line(bikes, tmp_path, caplog):
    sup = pgs_file(tmp_path / "boxes.sup")
    pgs = tmp_path / "pgs.mkv"
    ffmpeg("-i", str(bikes), "-i", str(sup), "-map", "0:v", "-map", "1", "-c:v", "copy", "-c:s", "copy", str(pgs))
    with caplog.at_level(logging.WARNING, logger="tvcaption.subtitles"):
        assert read_streams(pgs, 0.0, 10.0) == []
    (record,) = caplog.records
    assert record.getMessage() == (f"{pgs}: stream 1 (hdmv_pgs_subtitle) not read "
                                   "(bitmap subtitles are not OCRed; only text subtitles are indexed)")


def test_index_an_mpegts_at_one_hour_with_dvb_and_a_sidecar(bikes, tmp_path, caplog):
    """An MPEG-TS starting at PTS 1 h with a DVB bitmap stream and an SRT beside it: the DVB stream is
    one skipped line, the sidecar's words find the scenes they are said in."""
    from tvcaption.db.search import search
    from tvcaption.db.store import Store, connect
    from tvcaption.pipeline import index_paths

    folder = tmp_path / "rec"
    folder.mkdir()
    ts = folder / "news.ts"
    ffmpeg("-i", str(bikes), "-i", str(pgs_file(tmp_path / "b.sup")), "-map", "0:v", "-map", "1", "-c:v", "mpeg2video",
           "-q:v", "5", "-c:s", "dvbsub", "-output_ts_offset", "3600", "-f", "mpegts", str(ts))
    (folder / "news.en.srt").write_text(SRT)
    config = speech_config(tmp_path)
    with caplog.at_level(logging.WARNING):
        report = index_paths([folder], config)
    assert len(report.done) == 1 and not report.failed, report
    assert [r.getMessage() for r in caplog.records] == [
        f"{ts}: stream 1 (dvb_subtitle) not read (bitmap subtitles are not OCRed; only text subtitles are indexed)"]
    engine = connect(config.database_url)
    (hit,) = search(engine, "bicycle")
    assert hit.recording == str(ts.resolve()) and hit.start <= 3.2 < hit.end
    (note,) = [a for a in hit.annotations if a.kind == "speech"]
    assert note.analyser == "speech" and "The bicycle race starts now" in note.text
    cue = next(c for c in note.data["cues"] if "bicycle" in c["text"])
    assert cue == {"start": 3.2, "end": 5.2, "text": "The bicycle race starts now", "source": "news.en.srt", "language": "en"}
    scenes = Store(engine).scenes_of(ts.resolve())
    assert scenes[0].start == 0.0 and any("Hello cyclists" in a.text for a in scenes[0].annotations)


def test_a_sidecar_edit_indexes_the_recording_again(bikes, tmp_path, caplog):
    from tvcaption.db.search import search
    from tvcaption.db.store import connect
    from tvcaption.engine import Engine
    from tvcaption.pipeline import index_paths

    folder = tmp_path / "rec"
    folder.mkdir()
    shutil.copy(bikes, folder / "bikes.mp4")
    shutil.copy(bikes, folder / "plain.mp4")  # no sidecar: indexed once, then unchanged as before
    bikes = folder / "bikes.mp4"
    side = folder / "bikes.srt"
    side.write_text(SRT)
    config = speech_config(tmp_path)
    engine = Engine(config)
    first = index_paths([folder], config, engine=engine)
    assert len(first.done) == 2, first
    db = connect(config.database_url)
    said = search(db, "pedals")  # 5.3-6.0 s spans the cut at 5.48 s: both scenes have it
    assert {h.recording for h in said} == {str(bikes.resolve())} and len(said) == 2
    assert len(index_paths([folder], config, engine=engine).skipped) == 2  # nothing changed

    side.write_text(SRT.replace("pedals", "saddles"))  # edited: another size and mtime
    again = index_paths([folder], config, engine=engine)
    assert [p for p, *_ in again.done] == [str(bikes.resolve())] and len(again.skipped) == 1
    assert search(db, "pedals") == [] and len(search(db, "saddles")) == 2
    assert len(index_paths([folder], config, engine=engine).skipped) == 2

    side.unlink()  # removed: its words must go too
    assert [p for p, *_ in index_paths([folder], config, engine=engine).done] == [str(bikes.resolve())]
    assert search(db, "saddles") == []

    (folder / "bikes.de.srt").write_bytes("1\n00:00:01,500 --> 00:00:02,500\nFahrräder überall\n"
                                          "\n2\n99:00:00,000 --> 99:00:01,000\nzu spät\n".encode("cp1252"))
    with caplog.at_level(logging.WARNING, logger="tvcaption.subtitles"):  # a bad sidecar: one line, still indexed
        bad = index_paths([folder], config, engine=engine)
    assert [p for p, *_ in bad.done] == [str(bikes.resolve())] and not bad.failed
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == (f"{folder / 'bikes.de.srt'}: not UTF-8; read as Windows-1252; "
                    "1 cue past the end of the recording (10.0 s) left out")
    (hit,) = search(db, "überall")
    assert hit.annotations[0].data["cues"][0]["language"] == "de" and hit.annotations[0].text == "Fahrräder überall"


def test_speech_with_caption_and_tags_through_the_cli(toy, bikes, tmp_path):
    """Index, search and export as a user does, with the caption model, tags and speech."""
    from typer.testing import CliRunner

    from tvcaption.cli import app

    runner = CliRunner()
    media = tmp_path / "media"
    media.mkdir()
    clip = media / "bikes.mp4"
    shutil.copy(bikes, clip)
    (media / "bikes.en.vtt").write_text(VTT)
    config = toy.config(tmp_path / "cfg", f"sqlite:///{tmp_path / 'a.db'}")
    config.write_text(config.read_text() + '[index]\nanalysers = ["caption", "tags", "speech"]\n')
    done = runner.invoke(app, ["index", str(media), "--config", str(config)])
    assert done.exit_code == 0, done.output
    hits = json.loads(runner.invoke(app, ["search", "commence", "--json", "--config", str(config)]).output)
    assert len(hits) == 1 and hits[0]["start"] <= 3.2 < hits[0]["end"]
    out = tmp_path / "out"
    assert runner.invoke(app, ["export", str(clip), "--format", "json", "--out", str(out), "--config", str(config)]).exit_code == 0
    rows = json.loads((out / "bikes.tvcaption.json").read_text())
    said = [a for row in rows for a in row["annotations"] if a["analyser"] == "speech"]
    assert said and all(a["kind"] == "speech" for a in said)
    assert {"caption", "speech"} <= {a["analyser"] for a in rows[0]["annotations"]}
    assert said[0]["data"]["cues"][0] == {"start": 0.2, "end": 1.0, "text": "Bonjour & salut",
                                          "source": "bikes.en.vtt", "language": "en"}


def test_the_cli_shows_a_bad_sidecar_as_one_warning_line(bikes, tmp_path):
    """What the library logs reaches the user as one ``warning:`` line on stderr, not a
    traceback and not silence; the recording is indexed anyway."""
    from typer.testing import CliRunner

    from tvcaption.cli import app

    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(bikes, media / "bikes.mp4")
    side = media / "bikes.srt"
    side.write_bytes("1\n00:00:01,000 --> 00:00:02,000\nCafé crème\n".encode("cp1252"))
    config = tmp_path / "tvcaption.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "a.db"}"\n[index]\nanalysers = ["speech"]\n')
    done = CliRunner().invoke(app, ["index", str(media), "--config", str(config)])
    assert done.exit_code == 0, done.output
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(side) in warnings[0] and "Windows-1252" in warnings[0], done.stderr
    hits = CliRunner().invoke(app, ["search", "crème", "--json", "--config", str(config)])
    found = json.loads(hits.output)
    assert hits.exit_code == 0 and found and all(h["start"] < 2.0 and h["end"] > 1.0 for h in found), hits.output
