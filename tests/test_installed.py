"""tvcaption as a user gets it: a wheel installed (not editable) into a fresh environment, used
from folders of the user's own with no tvcaption.toml anywhere.

The fresh environment takes tvcaption from the wheel alone; torch and the other dependencies
come from the test environment's site-packages through a ``.pth`` line (installing 6 GB of
torch again would test pip, not us). The editable install there is not active: a ``.pth`` line
adds a folder to ``sys.path`` but does not run the ``.pth`` files inside it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from toymodel import make_clip

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], Path]:
    root = tmp_path_factory.mktemp("installed")
    src = root / "src"  # build from a copy: a build must not write into the checkout
    top_level_outputs = {".venv", ".git", "build", "dist", "demo", "runs", "features", "data", "bench", "work"}

    def skipped(folder: str, names: list[str]) -> set[str]:
        at_top = Path(folder) == REPO
        return {n for n in names if (at_top and n in top_level_outputs) or n == "__pycache__" or n.endswith(".egg-info")}

    shutil.copytree(REPO, src, ignore=skipped)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(root / "dist"), str(src)], check=True, capture_output=True, timeout=300)
    (wheel,) = (root / "dist").glob("tvcaption-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    purelib = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  check=True, capture_output=True, text=True).stdout.strip())
    (purelib / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps",
                    "--no-index", "-q", str(wheel)], check=True, capture_output=True, timeout=300)
    home = root / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TVCAPTION_", "XDG_", "PYTHON"))}
    env.update(HOME=str(home), COLUMNS="80", OMP_NUM_THREADS="1", TVCAPTION_FEATURES__THREADS="1")
    return venv / "bin" / "tvcaption", env, wheel


def test_every_package_is_listed_in_pyproject():
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.relative_to(REPO).parts[:-1]) for p in (REPO / "tvcaption").rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages"


def test_the_wheel_carries_the_model_and_the_migrations(installed):
    _, _, wheel = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("tvcaption/resources/models/synthtv-lstap.safetensors", "tvcaption/resources/models/synthtv-lstap.json",
                   "tvcaption/resources/migrations/env.py", "tvcaption/resources/migrations/script.py.mako",
                   "tvcaption/resources/migrations/versions/0001_initial.py", "tvcaption/features/imagenet_labels.txt",
                   "tvcaption/resources/sqlite_head.sql", "tvcaption/resources/tag_hypernyms.tsv"):
        assert needed in names, f"{needed} missing from {wheel.name}"


def test_installed_tool_works_from_any_folder(scenes_dir, needs_ffmpeg, installed, tmp_path):
    exe, env, _ = installed
    media, first, second = tmp_path / "media", tmp_path / "work", tmp_path / "elsewhere"
    for folder in (media, first, second):
        folder.mkdir()
    shutil.copyfile(scenes_dir / "bikes.mp4", media / "bikes.mp4")
    make_clip(media / "short.mkv", seconds=2.0)

    # the tool in use is the wheel's, not the checkout's
    where = _run([str(exe.parent / "python"), "-c", "import tvcaption; print(tvcaption.__file__)"], first, env)
    assert str(REPO) not in where.stdout and "site-packages" in where.stdout, where.stdout

    caption = _run([str(exe), "caption", "../media/bikes.mp4", "--json", "--beam-size", "1"], first, env)
    assert caption.returncode == 0, caption.stderr
    scenes = json.loads(caption.stdout)["scenes"]
    assert len(scenes) >= 3 and all(s["caption"] and "tags" in s for s in scenes)

    indexed = _run([str(exe), "index", "../media"], first, env)
    assert indexed.returncode == 0, indexed.stdout + indexed.stderr
    db = Path(env["HOME"]) / ".local" / "share" / "tvcaption" / "tvcaption.db"
    assert db.is_file(), "the default database belongs in the user's data folder"
    assert not list(first.iterdir()), "index must not write into the working folder"

    tag = next(w for s in scenes for t in s["tags"] for w in t.replace(",", " ").split() if w.isalpha() and len(w) > 3)
    found = _run([str(exe), "search", tag], second, env)  # another folder: the same database
    assert found.returncode == 0 and "bikes.mp4" in found.stdout, found.stdout + found.stderr

    current = _run([str(exe), "db", "current"], second, env)
    assert current.returncode == 0 and str(db) in current.stdout.replace("\n", ""), current.stdout

    # the shipped (SynthTV) model's captions of real footage are out of domain: left out, said on stderr
    exported = _run([str(exe), "export", "../media/bikes.mp4", "--format", "vtt", "--out", "subs"], second, env)
    assert exported.returncode == 0, exported.stderr
    vtt = (second / "subs" / "bikes.tvcaption.vtt").read_text(encoding="utf-8")
    assert vtt.startswith("WEBVTT") and ("-->" in vtt or "--all-captions" in exported.stderr), exported.stderr
    exported = _run([str(exe), "export", "../media/bikes.mp4", "--format", "vtt", "--out", "subs", "--all-captions"],
                    second, env)
    assert exported.returncode == 0, exported.stderr
    vtt = (second / "subs" / "bikes.tvcaption.vtt").read_text(encoding="utf-8")
    assert vtt.startswith("WEBVTT") and "-->" in vtt
