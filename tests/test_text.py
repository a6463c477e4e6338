"""On-screen text on real frames: real clips with lower thirds, Chinese headlines and tickers
burnt in by ffmpeg (bench/burnin.py), in MP4 and MPEG-2 TS, read by the text analyser, found
by search in either Chinese script, shown by export."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from needs import need
from tvcaption.analysers import AnalyserContext, analyser_class
from tvcaption.analysers.text import Reading, merge
from tvcaption.cli import app
from tvcaption.config import load_config

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()
pytest_plugins = ["pg"]


def _burnin():
    spec = importlib.util.spec_from_file_location("burnin", REPO / "bench" / "burnin.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["burnin"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def burnt(tmp_path_factory, scenes_dir, needs_ffmpeg):
    burnin = _burnin()
    need(Path(burnin.CJK_FONT).exists(), f"{burnin.CJK_FONT} missing: apt-get install -y fonts-wqy-zenhei")
    folder = tmp_path_factory.mktemp("burnt")
    return {b.out: (folder / b.out, b) for b in burnin.make_set(folder, scenes_dir)}


@pytest.fixture(scope="module")
def reader():
    return analyser_class("text")(AnalyserContext(load_config(None)))


def frames_of(path: Path, n: int = 3):
    from tvcaption.video import probe, read_frames, sample_times

    info = probe(path)
    times = sample_times(0.0, info.duration, 10)[[2, 4, 7]][:n]
    return read_frames(info, times)


def found_keys(readings) -> str:
    from tvcaption.analysers.text import _key

    return " ".join(_key(r.text) for r in readings)


@pytest.mark.parametrize("name", ["doc-lower-third.ts", "news-paris.mp4", "street-weather.ts"])
def test_burnt_in_text_is_read(burnt, reader, name):
    """Every lower-third line and headline on a real clip is read (letters and digits, case and
    Chinese script aside); the ticker's words too."""
    from tvcaption.analysers.text import _key

    path, truth = burnt[name]
    frames, times = frames_of(path)
    found = found_keys(merge(reader.read_scene(frames, times)))
    missed = [s for s in truth.strings if _key(s) not in found]
    assert not missed, f"{name}: not read: {missed}; read: {found}"


def test_a_frame_whose_text_and_picture_did_not_change_is_not_read_again(burnt, reader):
    """The lower third stays: of three frames of a still shot, one is read; on the clip whose
    ticker crawls, every frame is read (its text region moves)."""
    calls = []

    class Counting(type(reader)):
        def read_frame(self, frame, time):
            calls.append(time)
            return super().read_frame(frame, time)

    counting = Counting(reader.context)
    counting._ocr = reader.ocr
    counting.read_scene(*frames_of(burnt["doc-lower-third.ts"][0]))
    still = len(calls)
    calls.clear()
    counting.read_scene(*frames_of(burnt["street-weather.ts"][0]))
    assert (still, len(calls)) == (1, 3)


def test_the_same_text_in_several_frames_is_kept_once():
    readings = [Reading("Angela Merkel", 0.9, (0.1, 0.8, 0.5, 0.85), 2.0),
                Reading("ANGELA MERKEL", 0.95, (0.1, 0.8, 0.5, 0.85), 1.0),
                Reading("臺灣新聞", 0.8, (0.1, 0.05, 0.4, 0.1), 2.0),
                Reading("台湾新闻", 0.7, (0.1, 0.05, 0.4, 0.1), 3.0)]
    merged = merge(readings)
    assert [(r.text, r.seen, r.time) for r in merged] == [("臺灣新聞", 2, 2.0), ("ANGELA MERKEL", 2, 1.0)]


def test_noise_is_dropped(reader):
    """A frame with no text gives nothing (no hallucinated words from texture)."""
    rng = np.random.default_rng(0)
    flat = np.full((288, 360, 3), 90, np.uint8)
    noisy = np.clip(flat + rng.normal(0, 6, flat.shape), 0, 255).astype(np.uint8)
    assert reader.read_frame(noisy, 0.0) == []


SAID = """1
00:00:02,000 --> 00:00:04,500
The chancellor spoke about the budget.
"""


def test_indexed_text_is_searched_in_either_script_and_exported(burnt, tmp_path, db_url):
    """index -> search (a word of the lower third; two traditional characters of a headline
    typed simplified and the other way round; a word said in the subtitles) -> JSON and SRT
    --with-text; on SQLite and PostgreSQL."""
    media = tmp_path / "media"
    media.mkdir()
    for name in ("doc-lower-third.ts", "film-report.ts"):
        (media / name).symlink_to(burnt[name][0])
    (media / "doc-lower-third.en.srt").write_text(SAID)
    cfg = tmp_path / "tvcaption.toml"
    cfg.write_text(f'[database]\nurl = "{db_url}"\n[index]\nanalysers = ["text", "speech"]\n')
    result = runner.invoke(app, ["index", str(media), "--config", str(cfg)])
    assert result.exit_code == 0, result.output

    def found(query: str) -> list[str]:
        out = runner.invoke(app, ["search", query, "--json", "--config", str(cfg)])
        assert out.exit_code == 0, out.output
        return sorted({Path(h["recording"]).name for h in json.loads(out.output)})

    assert found("Merkel") == ["doc-lower-third.ts"]
    assert found("总统") == found("總統") == ["doc-lower-third.ts"]  # the headline is traditional
    assert found("暴雨警告") == found("紅色暴雨") == ["film-report.ts"]
    assert found("Brosnan Cannes") == ["film-report.ts"]
    assert found("budget") == found("chancellor spoke") == ["doc-lower-third.ts"]
    shown = runner.invoke(app, ["search", "Merkel", "--config", str(cfg)]).output
    assert "on screen:" in shown and "Angela Merkel" in shown

    out = tmp_path / "out"
    assert runner.invoke(app, ["export", str(media / "doc-lower-third.ts"), "-f", "json", "--out", str(out),
                               "--config", str(cfg)]).exit_code == 0
    rows = json.loads((out / "doc-lower-third.tvcaption.json").read_text())
    texts = [a for row in rows for a in row["annotations"] if a["kind"] == "text"]
    assert {a["analyser"] for a in texts} == {"text"} and "Angela Merkel" in {a["text"] for a in texts}
    assert all(0 <= v <= 1 for a in texts for v in a["data"]["box"]) and all(a["score"] >= 0.6 for a in texts)
    assert runner.invoke(app, ["export", str(media / "doc-lower-third.ts"), "-f", "srt", "--with-text",
                               "--out", str(out), "--config", str(cfg)]).exit_code == 0
    srt = (out / "doc-lower-third.tvcaption.srt").read_text()
    assert "On screen:" in srt and "Merkel" in srt


def test_spaces_the_recogniser_drops_are_put_back():
    from tvcaption.analysers.text import _GLUED

    fixed = [_GLUED.sub(" ", t) for t in ("Markets:DAX up 1.2percent,oil falls", "14:30 Live, 12th 4K 100km",
                                          "http://x.com", "臺灣,總統", "Ça va?Été")]
    assert fixed == ["Markets: DAX up 1.2 percent, oil falls", "14:30 Live, 12th 4K 100km", "http://x.com",
                     "臺灣,總統", "Ça va? Été"]
