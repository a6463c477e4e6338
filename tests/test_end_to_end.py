"""The product through its CLI, in-process, at toy size: synth -> train -> evaluate -> caption ->
index -> search -> export, on real video files, the real backbone and a real SQLite database."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from needs import need_module
from tvcaption.cli import app

pytest_plugins = ["pg"]
runner = CliRunner()


def run(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e2e")
    config = root / "tvcaption.toml"
    config.write_text(
        '[features]\ndevice = "cpu"\nthreads = 1\ncache_dir = "features"\nbatch_size = 16\n'
        '[model]\npath = "model/toy"\n[database]\nurl = "sqlite:///archive.db"\n'
        '[train]\nepochs = 2\nbatch_size = 8\nlr = 0.01\noptimizer = "adam"\n'
        '[decoding]\nbeam_size = 2\n'
    )
    run("synth", str(root / "synth"), "--train", "12", "--val", "4", "--test", "4", "--size", "64",
        "--broadcasts", "1", "--broadcast-seconds", "14", "--seed", "3")
    run("train", str(root / "synth"), "--out", str(root / "model" / "toy"), "--hidden", "16", "--attention", "8",
        "--embedding", "8", "--frames", "4", "--config", str(config))
    return {"root": root, "config": config, "data": root / "synth"}


def test_evaluate_reports_every_metric_and_the_floors(workspace):
    out = run("evaluate", "--model", str(workspace["root"] / "model" / "toy"), "--data", str(workspace["data"]),
              "--json", "--config", str(workspace["config"]))
    result = json.loads(out)
    keys = {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"}
    assert keys <= set(result["metrics"] if "metrics" in result else result)
    assert "slots" in result
    text = json.dumps(result)
    assert "constant" in text and "random" in text


def test_caption_json_follows_the_true_cuts(workspace):
    bcast = workspace["data"] / "broadcasts" / "bcast_000.mp4"
    truth = json.loads(bcast.with_suffix(".json").read_text())
    out = run("caption", str(bcast), "--json", "--config", str(workspace["config"]))
    result = json.loads(out)
    assert result["recording"] == str(bcast)
    starts = [s["start"] for s in result["scenes"]]
    true_starts = [s["start"] for s in truth["scenes"]]
    assert len(starts) == len(true_starts)
    assert max(abs(a - b) for a, b in zip(starts, true_starts)) < 0.1
    assert all(isinstance(s["caption"], str) and s["caption"] for s in result["scenes"])
    assert result["duration"] == pytest.approx(truth["duration"], abs=0.1)


def test_index_twice_search_and_export(workspace, db_url, tmp_path):
    """On SQLite and PostgreSQL."""
    srt = need_module("srt")
    webvtt = need_module("webvtt")
    cfg = str(workspace["config"])
    db = ["--db", db_url]
    folder = workspace["data"] / "broadcasts"
    first = runner.invoke(app, ["index", str(folder), "--config", cfg, *db])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["index", str(folder), "--config", cfg, *db])
    assert second.exit_code == 0 and "skipped" in second.stdout

    from tvcaption.db.store import Store, connect

    store = Store(connect(db_url))
    (rec,) = store.recordings()
    scenes = store.scenes_of(rec.path)
    truth = json.loads((folder / "bcast_000.json").read_text())
    assert len(scenes) == len(truth["scenes"])  # the second run added nothing

    from toymodel import searchable_word

    word = searchable_word(scenes[0])
    hits = json.loads(run("search", word, "--json", "--config", cfg, *db))
    assert hits and all(h["recording"] == rec.path for h in hits)
    assert isinstance(json.loads(run("search", '") OR (NOT "*', "--json", "--config", cfg, *db)), list)

    run("export", rec.path, "--format", "srt", "--out", str(tmp_path), "--config", cfg, *db)
    run("export", rec.path, "--format", "vtt", "--out", str(tmp_path), "--config", cfg, *db)
    (srt_file,) = tmp_path.glob("*.srt")
    (vtt_file,) = tmp_path.glob("*.vtt")
    subs = list(srt.parse(srt_file.read_text(encoding="utf-8")))
    assert subs[0].start.total_seconds() == pytest.approx(scenes[0].start, abs=0.001)
    assert len(webvtt.read(str(vtt_file))) >= len(scenes)
    for f in (srt_file, vtt_file):
        proc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(f), "-f", "srt", "pipe:1"],
                              check=True, capture_output=True, text=True)
        assert scenes[0].caption.split()[0] in proc.stdout


def test_no_model_is_one_line_naming_the_training_command(workspace, tmp_path):
    cfg = tmp_path / "tvcaption.toml"
    cfg.write_text('[model]\npath = "nowhere/model"\n')
    bcast = workspace["data"] / "broadcasts" / "bcast_000.mp4"
    result = runner.invoke(app, ["caption", str(bcast), "--config", str(cfg)])
    assert result.exit_code == 1
    lines = [l for l in result.output.splitlines() if l.strip()]
    assert len(lines) == 1 and "tvcaption train" in lines[0]


def test_not_a_video_is_one_line(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video")
    result = runner.invoke(app, ["caption", str(bad)])
    assert result.exit_code == 1
    lines = [l for l in result.output.splitlines() if l.strip()]
    assert len(lines) == 1 and "notes.mp4" in lines[0]


def test_rerun_skips_unchanged_files_without_hashing_them(workspace, tmp_path, monkeypatch):
    import os
    import shutil

    import tvcaption.pipeline as pipeline
    from tvcaption.engine import Engine
    from tvcaption.config import load_config
    from tvcaption.db.store import Store, connect

    folder = tmp_path / "rec"
    folder.mkdir()
    clip = folder / "a.mp4"
    shutil.copy(workspace["data"] / "broadcasts" / "bcast_000.mp4", clip)
    config = load_config(workspace["config"], env={"TVCAPTION_DATABASE__URL": f"sqlite:///{tmp_path}/a.db"})
    hashed: list[str] = []
    real_hash = pipeline.content_hash
    monkeypatch.setattr(pipeline, "content_hash", lambda p, **kw: hashed.append(str(p)) or real_hash(p, **kw))

    engine = Engine(config)
    assert len(pipeline.index_paths([folder], config, engine=engine).done) == 1 and len(hashed) == 1
    again = pipeline.index_paths([folder], config, engine=engine)
    assert again.skipped and not again.done and len(hashed) == 1  # stat only: same size and mtime

    st = clip.stat()
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: hashed, content unchanged
    touched = pipeline.index_paths([folder], config, engine=engine)
    assert touched.skipped and len(hashed) == 2
    assert pipeline.index_paths([folder], config, engine=engine).skipped and len(hashed) == 2  # new mtime stored

    data = bytearray(clip.read_bytes())
    data[-64:] = bytes(64)  # the last bytes changed: same size, new content
    clip.write_bytes(bytes(data))
    changed = pipeline.index_paths([folder], config, engine=engine)
    assert changed.done and len(hashed) == 3
    (rec,) = Store(connect(config.database_url)).recordings()
    assert rec.probe["file_size"] == len(data) and rec.status == "done"


def test_a_file_growing_while_it_is_indexed_is_stored_as_it_ends(workspace, tmp_path, monkeypatch):
    """A recording still being written when indexing starts: what is stored (size, hash,
    duration, scenes) describes the file as it is when saved, not as it was when first probed.
    A writer appends a second copy of the stream (an MPEG-TS grows that way) during the first
    captioning; a file still changing after the second one fails with a message."""
    import shutil
    import subprocess

    import tvcaption.pipeline as pipeline
    from tvcaption.engine import Engine
    from tvcaption.config import load_config
    from tvcaption.db.store import Store, connect
    from tvcaption.video import probe

    source = tmp_path / "part.ts"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(workspace["data"] / "broadcasts" / "bcast_000.mp4"),
                    "-t", "6", "-c:v", "mpeg2video", "-q:v", "5", "-an", "-f", "mpegts", str(source)], check=True)
    folder = tmp_path / "live"
    folder.mkdir()
    clip = folder / "live.ts"
    shutil.copy(source, clip)
    config = load_config(workspace["config"], env={"TVCAPTION_DATABASE__URL": f"sqlite:///{tmp_path}/g.db"})
    engine = Engine(config)
    real = pipeline.captions_of
    calls: list[int] = []

    def writer_appends(info, *args, **kwargs):  # the recorder adds to the file while we caption it
        result = real(info, *args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            with clip.open("ab") as out:
                out.write(source.read_bytes())
        return result

    monkeypatch.setattr(pipeline, "captions_of", writer_appends)
    report = pipeline.index_paths([folder], config, engine=engine)
    assert report.done and len(calls) == 2, report
    (rec,) = Store(connect(config.database_url)).recordings()
    assert rec.probe["file_size"] == clip.stat().st_size and rec.content_hash == pipeline.content_hash(clip)
    assert rec.duration == pytest.approx(probe(clip).duration, abs=0.05)

    calls.clear()

    def always_growing(info, *args, **kwargs):
        result = real(info, *args, **kwargs)
        with clip.open("ab") as out:
            out.write(source.read_bytes()[:188 * 100])
        return result

    monkeypatch.setattr(pipeline, "captions_of", always_growing)
    still = pipeline.index_paths([folder], config, engine=engine, reindex=True)
    assert not still.done and "changed while it was being indexed" in still.failed[0][1]


def test_hashing_in_a_thread_gives_the_file_sha256_and_its_errors(tmp_path):
    """The hash made beside the probe and the captioning is the file's SHA-256; a missing file's
    error comes out of result(); a cancelled hash stops at its next chunk."""
    import hashlib

    from tvcaption.pipeline import Hashing, content_hash

    data = bytes(range(256)) * 40_000  # 10 MB: more than one 8 MB chunk
    path = tmp_path / "a.ts"
    path.write_bytes(data)
    assert Hashing(path).result() == hashlib.sha256(data).hexdigest() == content_hash(path)
    with pytest.raises(FileNotFoundError):
        Hashing(tmp_path / "gone.ts").result()
    import threading

    stop = threading.Event()
    stop.set()
    assert content_hash(path, stop=stop) == ""


def test_a_recording_another_worker_finished_meanwhile_is_compared_by_its_hash(workspace, tmp_path):
    """A new file is claimed before its hash is known; if another worker indexed it between our
    look and our claim, the claim says HASH_NEEDED, the hash is awaited, and the same content is
    skipped, not indexed twice (what four PostgreSQL workers on one folder showed)."""
    import shutil

    import tvcaption.pipeline as pipeline
    from tvcaption.config import load_config
    from tvcaption.db.store import HASH_NEEDED, Store, connect
    from tvcaption.engine import Engine

    folder = tmp_path / "rec"
    folder.mkdir()
    clip = folder / "a.mp4"
    shutil.copy(workspace["data"] / "broadcasts" / "bcast_000.mp4", clip)
    url = f"sqlite:///{tmp_path}/a.db"
    config = load_config(workspace["config"], env={"TVCAPTION_DATABASE__URL": url})
    engine = Engine(config)
    assert len(pipeline.index_paths([folder], config, engine=engine).done) == 1  # the other worker
    store = Store(connect(url))
    key = pipeline.recording_key(clip)
    assert store.claim(key, None, "w2") is HASH_NEEDED  # a claim without a hash cannot compare
    assert store.claim(key, pipeline.content_hash(clip), "w2") is None  # with it: the same content, done

    class LookedEarlier(Store):
        """The store as a worker that looked before the other one saved: it found nothing."""

        def find_recording(self, path):
            return None

    late = LookedEarlier(store.engine)
    report = pipeline.IndexReport()
    pipeline._index_one(clip, late, engine, config, False, report, lambda event: None)
    assert report.skipped == [key] and not report.done and not report.failed
    assert len(store.recordings()) == 1 and store.recordings()[0].status == "done"
    store.engine.dispose()
