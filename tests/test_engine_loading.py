"""The engine loads its models in a thread of its own while the first recording is decoded, and
a model that fails to load stops the batch without blaming (or keeping) any recording."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest_plugins = ["toymodel"]  # the session's `toy` fixture


def test_the_engine_is_built_before_its_models_are_loaded(toy, tmp_path):
    """In a fresh process: Engine() returns at once with what a claim and the decoder need (its
    model name, frames per scene), torch not yet needed by the caller; the models arrive later."""
    from toymodel import subprocess_env

    config = toy.config(tmp_path / "cfg", f"sqlite:///{tmp_path / 'a.db'}")
    script = (
        "import time\n"
        "from tvcaption.config import load_config\n"
        "from tvcaption.engine import Engine\n"
        f"cfg = load_config({str(config)!r})\n"
        "t = time.perf_counter(); engine = Engine(cfg); built = time.perf_counter() - t\n"
        "at_once = engine.context.loaded\n"
        "engine.wait_loaded(); loaded = time.perf_counter() - t\n"
        "print(at_once, engine.context.loaded, engine.frames, engine.model_name, round(built, 3), round(loaded, 3))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=subprocess_env(),
                         timeout=300, check=True).stdout.split()
    at_once, done, frames, name, built, loaded = out
    print(f"Engine() {built} s, models loaded after {loaded} s")
    assert (at_once, done) == ("False", "True")
    assert int(frames) > 0 and name
    assert float(built) < float(loaded)


def test_a_model_that_fails_to_load_stops_the_batch_and_keeps_no_claim(toy, tmp_path):
    from tvcaption.config import load_config, with_overrides
    from tvcaption.db.store import Store, connect
    from tvcaption.errors import ModelLoadError
    from tvcaption.pipeline import index_paths

    from toymodel import make_clip, nan_weights_copy

    stem = nan_weights_copy(toy, tmp_path / "model")
    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        make_clip(folder / name)
    url = f"sqlite:///{tmp_path / 'a.db'}"
    config = with_overrides(load_config(toy.config(tmp_path / "cfg", url)), "model", path=str(stem))
    with pytest.raises(ModelLoadError, match="NaN or infinite"):
        index_paths([folder], config)
    store = Store(connect(url))
    statuses = {r.path.rsplit("/", 1)[-1]: r.status for r in store.recordings()}
    # the first recording was claimed while the models loaded, then given back: not blamed, not
    # held; the batch stopped before the second
    assert statuses == {"a.mp4": "pending"}, statuses


def test_a_run_with_nothing_to_index_never_loads_the_models(toy, tmp_path):
    from tvcaption.config import load_config
    from tvcaption.engine import Engine
    from tvcaption.pipeline import index_paths

    from toymodel import make_clip

    folder = tmp_path / "clips"
    folder.mkdir()
    make_clip(folder / "a.mp4")
    config = load_config(toy.config(tmp_path / "cfg", f"sqlite:///{tmp_path / 'a.db'}"))
    first = Engine(config)
    assert len(index_paths([folder], config, engine=first).done) == 1 and first.context.loaded
    again = Engine(config)
    report = index_paths([folder], config, engine=again)
    assert len(report.skipped) == 1 and not report.done
    assert not again.context.loading_started  # torch and the weights were never needed


def test_the_summary_of_a_run_with_nothing_to_index_shows_no_speed(toy, tmp_path):
    """A second `tvcaption index` of the same folder skips it: its summary shows no speed
    (it used to say "0.0x real time", as if indexing had crawled)."""
    from typer.testing import CliRunner

    from tvcaption.cli import app

    from toymodel import make_clip

    folder = tmp_path / "clips"
    folder.mkdir()
    make_clip(folder / "a.mp4")
    config = toy.config(tmp_path / "cfg", f"sqlite:///{tmp_path / 'a.db'}")
    first = CliRunner().invoke(app, ["index", str(folder), "--config", str(config)], env={"COLUMNS": "120"})
    assert first.exit_code == 0, first.output
    assert "x real time" in first.output
    again = CliRunner().invoke(app, ["index", str(folder), "--config", str(config)], env={"COLUMNS": "120"})
    assert again.exit_code == 0, again.output
    assert "x real time" not in again.output
    row = next(line for line in again.output.splitlines() if line.count("│") >= 6 and "1" in line)
    assert [c.strip() for c in row.strip().strip("│").split("│")] == ["0", "0", "1", "0", "-"]
