"""CLI surface: every command explains itself, and the light commands do not import torch."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tvcaption.cli import app

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
