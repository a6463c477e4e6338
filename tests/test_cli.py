"""CLI surface: every command explains itself, and the light commands do not import torch."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tvcaption.cli import app

pytest_plugins = ["toymodel"]  # the session's `toy` fixture
runner = CliRunner()


def _commands(typer_app, prefix=()):
    import typer.main

    group = typer.main.get_command(typer_app)
    stack = [(prefix, group)]
    while stack:
        path, cmd = stack.pop()
        yield path
        for name, sub in getattr(cmd, "commands", {}).items():
            stack.append((path + (name,), sub))


@pytest.mark.parametrize("path", list(_commands(app)), ids=lambda p: " ".join(p) or "tvcaption")
def test_every_command_has_help(path):
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    assert len(result.output.strip().splitlines()) > 3


def test_help_and_search_do_not_import_torch():
    code = (
        "import sys; from tvcaption.cli import app\n"
        "import tvcaption.db.search, tvcaption.db.store, tvcaption.export\n"
        "heavy = [m for m in ('torch', 'decord', 'scenedetect', 'cv2') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_file_is_one_line_and_nonzero(tmp_path):
    result = runner.invoke(app, ["caption", str(tmp_path / "nope.ts")])
    assert result.exit_code == 1
    lines = [l for l in result.output.splitlines() if l.strip()]
    assert len(lines) == 1 and "nope.ts" in lines[0], result.output


def test_names_with_brackets_are_printed_as_they_are(toy, tmp_path, monkeypatch):
    """Archive file names often hold brackets ("[bbc] news.ts"); rich must not read them as style
    tags and drop them from failure lines, tables or errors."""
    from rich.console import Console

    import tvcaption.cli as cli
    from toymodel import make_clip, searchable_word

    monkeypatch.setattr(cli, "out", Console(width=400))  # a wide terminal: table cells unwrapped
    monkeypatch.setattr(cli, "err", Console(width=400, stderr=True))
    folder = tmp_path / "[bbc] archive"
    folder.mkdir()
    clip = make_clip(folder / "[news] clip.mp4")
    (folder / "[bad] broken.ts").write_bytes(b"not a video")
    config = toy.config(tmp_path / "cfg", f"sqlite:///{tmp_path / 'archive.db'}")

    indexed = runner.invoke(app, ["index", str(folder), "--config", str(config)])
    assert indexed.exit_code == 1, indexed.output  # one file failed
    failed = [line for line in indexed.output.splitlines() if line.startswith("failed")]
    assert failed and all("[bbc] archive/[bad] broken.ts" in line for line in failed), indexed.output

    from tvcaption.db.store import Store

    with Store(f"sqlite:///{tmp_path / 'archive.db'}") as store:
        word = searchable_word(store.scenes_of(str(clip))[0])
    found = runner.invoke(app, ["search", word, "--config", str(config)])
    assert found.exit_code == 0 and "[news] clip.mp4" in found.output and "[bbc] archive" in found.output, found.output

    captioned = runner.invoke(app, ["caption", str(clip), "--config", str(config)])
    assert captioned.exit_code == 0 and "[news] clip.mp4" in captioned.output, captioned.output
    as_json = runner.invoke(app, ["caption", str(clip), "--json", "--config", str(config)])
    scenes = json.loads(as_json.stdout)["scenes"]  # no meaning vector: caption stores and searches nothing
    assert scenes and not any(a["analyser"] == "meaning" for s in scenes for a in s["annotations"])

    missing = runner.invoke(app, ["caption", str(folder / "[gone] x.ts")])
    assert missing.exit_code == 1 and "[gone] x.ts" in missing.output, missing.output
