"""Every mistake a user can make on the command line ends in one line naming the thing and the
fix, exit 1, and no traceback; and what users type to name things works.

The commands run through the real CLI (Typer's runner, in-process) against a real indexed
database on SQLite and PostgreSQL, with the session's toy model.
"""

from __future__ import annotations

import os

import pytest
from rich.console import Console
from typer.testing import CliRunner

import tvcaption.cli as cli
from tvcaption.cli import app

pytest_plugins = ["pg", "toymodel"]
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, *names: str) -> str:
    """The result is exit 1 with one line saying 'error: ...' that names every one of ``names``."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for name in names:
        assert name in lines[0], f"{name!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture
def wide(monkeypatch):
    monkeypatch.setattr(cli, "out", Console(width=400))
    monkeypatch.setattr(cli, "err", Console(width=400, stderr=True))


@pytest.fixture
def indexed(toy, db_url, tmp_path, wide):
    """A folder with one short clip, indexed into ``db_url``; returns (config, media folder, clip)."""
    from toymodel import make_clip

    media = tmp_path / "media"
    media.mkdir()
    clip = make_clip(media / "bikes.mp4", seconds=2.0)
    config = toy.config(tmp_path / "cfg", db_url)
    result = invoke("index", media, "--config", config)
    assert result.exit_code == 0, result.output
    return config, media, clip


def test_a_missing_database_is_reported_not_created(tmp_path, wide, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for db in ("typo.db", f"sqlite:///{tmp_path / 'typo2.db'}", "sqlite:///typo3.db"):
        for args in (("search", "man"), ("export", "x.ts"), ("db", "current")):
            line = one_line_error(invoke(*args, "--db", db), "typo")
            assert "index" in line
    assert not list(tmp_path.iterdir()), "reading commands must not create a database"


def test_a_missing_postgres_database_is_one_line(pg_url, wide):
    url = pg_url.rsplit("/", 1)[0] + "/no_such_database"
    one_line_error(invoke("search", "man", "--db", url), "no_such_database")


def test_a_plain_path_for_db_is_a_sqlite_file(toy, tmp_path, wide, monkeypatch):
    from toymodel import make_clip

    monkeypatch.chdir(tmp_path)
    clip = make_clip(tmp_path / "clip.mp4")
    config = toy.config(tmp_path / "cfg", "sqlite:///unused.db")
    assert invoke("index", clip, "--db", "plain.db", "--config", config).exit_code == 0
    assert (tmp_path / "plain.db").is_file()
    assert invoke("export", "clip.mp4", "--db", "plain.db", "--out", "subs").exit_code == 0


def test_a_damaged_sqlite_file_is_one_line(toy, tmp_path, wide):
    from toymodel import make_clip

    db = tmp_path / "archive.db"
    config = toy.config(tmp_path / "cfg", f"sqlite:///{db}")
    clip = make_clip(tmp_path / "clip.mp4")
    assert invoke("index", clip, "--config", config).exit_code == 0
    import sqlite3

    with sqlite3.connect(db) as conn:  # everything into the main file, so damage there is seen
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db.read_bytes())
    page = 4096
    for start in range(page, len(data), page):  # every page but the header's: the tables are gone
        data[start:start + page] = os.urandom(min(page, len(data) - start))
    db.write_bytes(bytes(data))
    for args in (("search", "clip"), ("export", clip, "--out", tmp_path / "subs"), ("index", clip),
                 ("db", "current")):
        one_line_error(invoke(*args, "--config", config), str(db))


def test_a_file_that_is_not_a_database_is_one_line(tmp_path, wide):
    fake = tmp_path / "notes.db"
    fake.write_text("these are my notes, not a database\n" * 200)
    for args in (("search", "man"), ("export", "x.ts"), ("db", "current")):
        one_line_error(invoke(*args, "--db", fake), str(fake))


def test_bad_flags_are_one_line(toy, tmp_path, wide):
    from toymodel import make_clip

    clip = make_clip(tmp_path / "clip.mp4")
    config = toy.config(tmp_path / "cfg", f"sqlite:///{tmp_path / 'a.db'}")
    one_line_error(invoke("caption", clip, "--beam-size", "0", "--config", config), "--beam-size")
    one_line_error(invoke("search", "man", "--limit", "0", "--config", config), "--limit")
    one_line_error(invoke("export", clip, "--all", "--config", config), "--all")
    one_line_error(invoke("caption", clip, "--model", tmp_path / "nothing", "--config", config), "nothing")
    (tmp_path / "bad.toml").write_text("[decoding]\nbeam_size = 0\n")
    one_line_error(invoke("caption", clip, "--config", tmp_path / "bad.toml"), "beam_size")


def test_a_huge_limit_is_clamped(indexed):
    config, _, _ = indexed
    result = invoke("search", "anything", "--limit", "99999999999999999999", "--config", config)
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output


def test_damaged_weights_with_a_matching_hash_are_one_line(toy, tmp_path, wide):
    from toymodel import make_clip, nan_weights_copy

    stem = nan_weights_copy(toy, tmp_path / "model")
    clip = make_clip(tmp_path / "clip.mp4")
    config = toy.config(tmp_path / "cfg", f"sqlite:///{tmp_path / 'a.db'}")
    for command in ("caption", "index"):
        one_line_error(invoke(command, clip, "--model", stem, "--config", config), "broken.safetensors")


def test_export_out_naming_a_file_is_one_line(indexed, tmp_path):
    config, _, clip = indexed
    existing = tmp_path / "taken.txt"
    existing.write_text("x")
    one_line_error(invoke("export", clip, "--out", existing, "--config", config), "taken.txt")


def test_export_out_dash_writes_the_track_to_standard_output(indexed, tmp_path, monkeypatch):
    config, _, clip = indexed
    monkeypatch.chdir(tmp_path)
    # --all-captions: the toy model's captions are out of domain, and the track must not be empty
    result = invoke("export", clip, "--format", "srt", "--all-captions", "--out", tmp_path / "subs", "--config", config)
    assert result.exit_code == 0, result.output
    written = next((tmp_path / "subs").glob("*.srt")).read_text()
    piped = invoke("export", clip, "--format", "srt", "--all-captions", "--out", "-", "--config", config)
    assert piped.exit_code == 0, piped.output
    assert piped.stdout == written and written.startswith("1\n")  # exactly the file, nothing else
    assert not (tmp_path / "-").exists()  # no folder named "-"
    one_line_error(invoke("export", "--all", "--out", "-", "--config", config), "--out -", "--all")


def test_recordings_are_found_by_any_path_to_them(indexed, tmp_path, monkeypatch):
    config, media, clip = indexed
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "link.mp4").symlink_to(clip)
    monkeypatch.chdir(tmp_path)
    for name in ("media/bikes.mp4", "odd/../media/bikes.mp4", "odd/link.mp4", str(clip)):
        result = invoke("export", name, "--format", "json", "--out", tmp_path / "subs", "--config", config)
        assert result.exit_code == 0, (name, result.output)
        hits = invoke("search", "", "--recording", name, "--json", "--config", config)
        assert hits.exit_code == 0
    # every path names the same stored recording, stored once, resolved
    from tvcaption.config import load_config
    from tvcaption.db.store import Store

    with Store(load_config(config).database_url) as store:
        assert [r.path for r in store.recordings()] == [os.path.realpath(clip)]


def test_failures_name_the_file_and_print_once(toy, tmp_path, wide):
    media = tmp_path / "media"
    media.mkdir()
    for i in range(3):
        (media / f"empty{i}.ts").write_bytes(b"")
    config = toy.config(tmp_path / "cfg", f"sqlite:///{tmp_path / 'a.db'}")
    result = invoke("index", media, tmp_path / "nowhere", "--config", config)
    assert result.exit_code == 1 and "Traceback" not in result.output
    for name in ("empty0.ts", "empty1.ts", "empty2.ts", "nowhere"):
        lines = [line for line in result.output.splitlines() if name in line]
        assert len(lines) == 1, (name, result.output)


def test_a_folder_without_recordings_says_what_is_indexed(toy, tmp_path, wide):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("hello")
    config = toy.config(tmp_path / "cfg", f"sqlite:///{tmp_path / 'a.db'}")
    result = invoke("index", tmp_path / "docs", "--config", config)
    assert result.exit_code == 0 and "no recordings found" in result.output and ".mxf" in result.output
    assert "(set [index] extensions to add others)" in " ".join(result.output.split())


def test_search_at_80_columns_shows_the_file_name_and_full_timecodes(indexed, monkeypatch):
    from tvcaption.db.store import Store
    from tvcaption.config import load_config
    from toymodel import searchable_word
    from tvcaption.views import timecode

    config, _, clip = indexed
    monkeypatch.setattr(cli, "out", Console(width=80))
    with Store(load_config(config).database_url) as store:
        scene = store.scenes_of(str(clip))[0]
    result = invoke("search", searchable_word(scene), "--config", config)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert all(len(line) <= 80 for line in lines), result.output
    assert any("bikes.mp4" in line and timecode(scene.start) in line and timecode(scene.end) in line
               for line in lines), result.output
