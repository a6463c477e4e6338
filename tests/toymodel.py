"""A tiny trained checkpoint and a config that uses it, shared by the reliability tests.

``toy`` (session fixture) runs ``tvcaption synth`` and ``tvcaption train`` in-process once per
test session: 8 SynthTV clips at 64x64, 2 frames a clip, a 16-unit LSTM, 1 epoch. The result is
a real checkpoint with the real backbone; its captions are poor, which does not matter here:
these tests check what gets stored, not what it says. Also :func:`write_config` for a
``tvcaption.toml`` pointing at that checkpoint and a given database, and :func:`make_clip`, a
short synthetic video made with ffmpeg.

Test modules load it with ``pytest_plugins = ["toymodel"]`` (one toy per session, like ``pg``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent  # the interpreter running the tests; tvcaption is beside it


@dataclass(frozen=True)
class Toy:
    root: Path
    model: Path  # checkpoint stem
    data: Path  # the SynthTV folder (videos/*.mp4)

    def config(self, folder: Path, db_url: str, claim_timeout: float | None = None) -> Path:
        return write_config(folder, self.model, db_url, claim_timeout)


def write_config(folder: Path, model: Path, db_url: str, claim_timeout: float | None = None) -> Path:
    """A tvcaption.toml in ``folder``: CPU, one thread, greedy decoding, the toy model, ``db_url``."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (
        '[features]\ndevice = "cpu"\nthreads = 1\nbatch_size = 8\ncache_dir = "features"\n'
        f'[model]\npath = "{model}"\n'
        f'[database]\nurl = "{db_url}"\n' + (f"claim_timeout = {claim_timeout}\n" if claim_timeout is not None else "")
        + '[decoding]\nbeam_size = 1\nmax_len = 8\n'
    )
    path = folder / "tvcaption.toml"
    path.write_text(text)
    return path


def build_toy(root: Path) -> Toy:
    from typer.testing import CliRunner

    from tvcaption.cli import app

    runner = CliRunner()
    config = write_config(root, root / "model" / "toy", f"sqlite:///{root / 'unused.db'}")
    config.write_text(config.read_text() + '[train]\nepochs = 1\nbatch_size = 4\nlr = 0.01\noptimizer = "adam"\n')

    def run(*args: str) -> None:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output

    data = root / "synth"
    run("synth", str(data), "--train", "8", "--val", "2", "--test", "2", "--size", "64", "--seed", "5")
    run("train", str(data), "--out", str(root / "model" / "toy"), "--hidden", "16", "--attention", "8",
        "--embedding", "8", "--frames", "2", "--val-clips", "2", "--select", "loss", "--config", str(config))
    return Toy(root=root, model=root / "model" / "toy", data=data)


@pytest.fixture(scope="session")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Toy:
    return build_toy(tmp_path_factory.mktemp("toymodel"))


def searchable_word(scene) -> str:
    """A word search will find in a stored scene: from its caption, else from its tags (a toy
    model's caption may be all stop words, "we we we", which search rightly ignores)."""
    from tvcaption.db.bm25 import STOP_WORDS

    return next(w for w in scene.caption.split() + list(scene.tags) if w not in STOP_WORDS and len(w) > 3)


def make_clip(out: Path, seconds: float = 1.0, size: str = "96x64", rate: int = 10,
              extra: tuple[str, ...] = (), source: str | None = None) -> Path:
    """A short H.264 clip made with ffmpeg from a lavfi source (testsrc2 by default)."""
    src = source or f"testsrc2=size={size}:rate={rate}:duration={seconds}"
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", src, "-t", str(seconds), "-pix_fmt", "yuv420p",
           "-c:v", "libx264", "-preset", "ultrafast", *extra, str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return out


def tvcaption_exe() -> list[str]:
    """The installed console script (``.venv/bin/tvcaption``), else ``python -m tvcaption.cli``."""
    exe = VENV_BIN / "tvcaption"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tvcaption.cli"]


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TVCAPTION_")}
    env.update(COLUMNS="200", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def nan_weights_copy(toy: Toy, folder: Path) -> Path:
    """The toy model copied into ``folder`` (made here) as ``broken``, with NaN weights and a
    matching hash: it passes every check of its JSON and fails only when torch reads the weights."""
    import hashlib
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    stem = folder / "broken"
    folder.mkdir()
    shutil.copyfile(toy.model.with_suffix(".json"), stem.with_suffix(".json"))
    tensors = load_file(str(toy.model.with_suffix(".safetensors")))
    name = next(iter(tensors))
    tensors[name] = tensors[name] * float("nan")
    save_file(tensors, str(stem.with_suffix(".safetensors")))
    doc = json.loads(stem.with_suffix(".json").read_text())
    doc["sha256"] = hashlib.sha256(stem.with_suffix(".safetensors").read_bytes()).hexdigest()
    stem.with_suffix(".json").write_text(json.dumps(doc))
    return stem
