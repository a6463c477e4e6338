"""Training end to end at toy size on CPU: a tiny SynthTV set generated in tmp, the real backbone
(EfficientNet-Lite0 on 4 frames per clip), a model with 16 hidden units."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from needs import need_module

torch = need_module("torch")

from tvcaption.config import FeaturesConfig, TrainConfig  # noqa: E402
from tvcaption.errors import CheckpointError, TvcaptionError  # noqa: E402
from tvcaption.model import ModelDims  # noqa: E402
from tvcaption.train import (  # noqa: E402
    caption_choice,
    flatten_optimizer,
    get_lr,
    stem_paths,
    train,
    unflatten_optimizer,
)

TOY_DIMS = ModelDims(hidden=16, attention=8, embedding=8, frames=4)


@pytest.fixture(scope="module")
def synthtv(tmp_path_factory) -> Path:
    from tvcaption.data import generate_synthtv

    return generate_synthtv(tmp_path_factory.mktemp("synthtv"), train=8, val=4, test=4, size=64, seed=0)


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> FeaturesConfig:
    return FeaturesConfig(device="cpu", threads=1, cache_dir=str(tmp_path_factory.mktemp("features")))


def toy_config(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 3, "batch_size": 4, "lr": 1e-2, "seed": 0, **kw})


# -- pure pieces --------------------------------------------------------------------------------
def test_get_lr_is_constant_after_warmup():
    assert get_lr(0, 1e-4) == 1e-4
    assert get_lr(10_000, 1e-4) == 1e-4
    assert get_lr(0, 1e-3, warmup=10) == pytest.approx(1e-4)
    assert get_lr(9, 1e-3, warmup=10) == pytest.approx(1e-3)
    assert get_lr(50, 1e-3, warmup=10) == 1e-3


def test_caption_choice_is_a_function_of_seed_and_epoch():
    counts = [1, 3, 20, 7]
    a = caption_choice(counts, seed=0, epoch=1)
    assert np.array_equal(a, caption_choice(counts, seed=0, epoch=1))
    assert all(0 <= i < n for i, n in zip(a, counts))
    draws = np.stack([caption_choice(counts, 0, e) for e in range(200)])
    assert len(set(draws[:, 2])) > 10  # different captions over epochs
    assert set(draws[:, 0]) == {0}


def test_stem_paths_accept_json_or_stem():
    assert stem_paths("models/m.json") == stem_paths("models/m")
    assert stem_paths("models/m")["state_json"] == Path("models/m.state.json")


def test_optimizer_state_round_trips_without_pickle():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-10)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, doc = flatten_optimizer(opt)
    json.dumps(doc)  # everything that is not a tensor is JSON
    fresh = torch.optim.RMSprop(model.parameters(), lr=5.0)
    fresh.load_state_dict(unflatten_optimizer(tensors, doc))
    assert fresh.param_groups[0]["lr"] == 1e-3 and fresh.param_groups[0]["alpha"] == 0.9
    for p in model.parameters():
        assert torch.equal(fresh.state[p]["square_avg"], opt.state[p]["square_avg"])


# -- end to end ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def events() -> dict[str, list]:
    """What each run of ``trained`` reported through ``on_event``, by run name."""
    return {"full": [], "part": [], "resumed": []}


@pytest.fixture(scope="module")
def trained(synthtv, features, events, tmp_path_factory):
    """Three epochs straight (the reference run), plus two epochs then a resume to three."""
    out = tmp_path_factory.mktemp("runs")
    full = train(synthtv, out / "full", config=toy_config(), features=features, dims=TOY_DIMS,
                 on_event=events["full"].append)
    part = train(synthtv, out / "part", config=toy_config(epochs=2), features=features, dims=TOY_DIMS,
                 on_event=events["part"].append)
    resumed = train(synthtv, out / "part", config=toy_config(epochs=3), features=features, dims=TOY_DIMS,
                    resume=True, on_event=events["resumed"].append)
    return full, part, resumed


def test_training_reports_what_it_does_through_events(trained, events):
    full, _, resumed = trained
    kinds = [e.kind for e in events["full"]]
    assert kinds[0] == "features" and kinds.index("data") < kinds.index("model") < kinds.index("batch")
    extracted = [e for e in events["full"] if e.kind == "features"]
    assert {e.split for e in extracted} == {"train", "val"}
    assert (extracted[0].done, extracted[0].total) == (0, 8) and (extracted[-1].done, extracted[-1].total) == (4, 4)
    batches = [e for e in events["full"] if e.kind == "batch" and e.epoch == 1]
    assert [e.done for e in batches] == list(range(1, batches[0].total + 1))
    assert batches[0].loss is not None and np.isfinite(batches[0].loss)
    epochs = [e for e in events["full"] if e.kind == "epoch"]
    assert [e.row for e in epochs] == list(full.history) and {e.select for e in epochs} == {"CIDEr"}
    data = next(e for e in events["full"] if e.kind == "data").info
    assert data["train_clips"] == 8 and data["val_clips"] == 4 and data["backbone"] == "efficientnet_lite0"
    later = [e.kind for e in events["resumed"]]  # the cache is complete: nothing extracted
    assert "features" not in later and later.index("resumed") < later.index("model")
    assert next(e for e in events["resumed"] if e.kind == "resumed").info["epoch"] == 2
    assert [e.epoch for e in events["resumed"] if e.kind == "epoch"] == [3]


def test_the_train_view_draws_the_events_as_log_lines(trained, events):
    import io

    from rich.console import Console

    from tvcaption.views_train import TrainView

    buf = io.StringIO()
    with TrainView(Console(file=buf, width=300)) as view:
        for event in events["full"]:
            view(event)
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("data ") and "8 train clips, 4 val clips, vocabulary" in lines[0]
    assert lines[1].startswith("model att+matching: ") and "hidden 16, rmsprop lr 0.01, batch 4" in lines[1]
    assert [line.split(" |")[0] for line in lines[2:]] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert "B4 " in lines[2] and "slots " in lines[2] and "clips/s" in lines[2]


def test_without_a_terminal_a_long_bar_prints_a_line_now_and_then(monkeypatch):
    """nohup tvcaption train ... > log: no bar can be drawn, so long work prints a plain line every
    ``every`` seconds and one when it ends; short work stays quiet."""
    import io

    from rich.console import Console

    from tvcaption.views_train import Bar

    from tvcaption import views_train

    clock = [1000.0]
    monkeypatch.setattr(views_train.time, "monotonic", lambda: clock[0])  # seconds as this test says
    buf = io.StringIO()
    bar = Bar(Console(file=buf, width=300), every=60.0)
    assert not bar.enabled
    bar.update("train", "features (train)", 0, 40)
    clock[0] += 30
    bar.update("train", "features (train)", 1, 40)  # half a minute: nothing yet
    assert buf.getvalue() == ""
    clock[0] += 31
    bar.update("train", "features (train)", 10, 40)
    clock[0] += 61
    bar.update("train", "features (train)", 40, 40)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2
    assert lines == ["features (train): 10/40 (25%), 0.2 a second, ~3 min 03 s left",
                     "features (train): 40/40 (100%), 2 min 02 s"]

    quick = io.StringIO()
    bar = Bar(Console(file=quick, width=300), every=60.0)
    for _ in range(2):  # twice on one bar: the second run starts its own clock
        for done in range(41):
            clock[0] += 1
            bar.update("val", "features (val)", done, 40)
    assert quick.getvalue() == ""


def test_train_writes_loadable_checkpoints(trained, synthtv):
    from tvcaption.checkpoint import load_checkpoint

    full, _, _ = trained
    assert full.epochs == 3 and [h["epoch"] for h in full.history] == [1, 2, 3]
    assert full.checkpoint.is_file() and full.last.is_file() and full.state.is_file()
    captioner = load_checkpoint(full.checkpoint)
    meta = captioner.meta
    assert meta["backbone"] == "efficientnet_lite0" and meta["frames"] == 4
    assert meta["global_descriptor"] == "mean" and meta["epoch"] == full.best_epoch
    assert meta["data"]["path"] == str(synthtv) and meta["data"]["train_clips"] == 8
    assert {"CIDEr", "METEOR", "Bleu_4", "ROUGE_L", "loss", "slots"} <= set(meta["metrics"])
    for slot in ("kind", "colour", "action"):  # per-slot accuracy on one-actor clips, logged each epoch
        assert 0.0 <= meta["metrics"][f"single_{slot}"] <= 1.0
    assert meta["metrics"]["CIDEr"] == pytest.approx(full.best_score)
    assert captioner.dims.hidden == 16 and captioner.dims.feature_dim == 1280
    assert captioner.dims.dropout == 0.5 and captioner.dims.matching_weight == 0.4  # TrainConfig's recipe
    from tvcaption.decoding import DecodingOptions, decode

    local = torch.zeros(2, 4, 7, 7, 1280)
    assert len(decode(captioner.model, local, torch.zeros(2, 1280), DecodingOptions())) == 2


def test_train_loss_decreases(trained):
    full, _, _ = trained
    losses = [h["train_loss"] for h in full.history]
    assert losses[-1] < losses[0] - 0.1, losses
    assert all(np.isfinite(losses))
    for row in full.history:
        assert row["train_seconds"] > 0 and row["val_seconds"] > 0 and row["clips_per_second"] > 0


def test_resume_continues_exactly_where_it_stopped(trained):
    full, part, resumed = trained
    assert part.epochs == 2 and resumed.epochs == 3
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    # same captions drawn, same shuffles, same optimizer and RNG state: the same numbers
    for a, b in zip(full.history, resumed.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["val"]["loss"] == pytest.approx(b["val"]["loss"], rel=1e-6)
    state = json.loads(resumed.state.read_text())
    assert state["epoch"] == 3 and state["step"] == full.history[-1]["step"]
    from safetensors import safe_open

    with safe_open(str(resumed.state).replace(".json", ".safetensors"), "pt") as fh:
        names = set(fh.keys())
    assert any(n.startswith("optim.") and n.endswith("square_avg") for n in names)
    assert {"rng.torch", "rng.numpy"} <= names and any(n.startswith("model.") for n in names)


def test_resume_with_nothing_left_to_do(trained, synthtv, features):
    _, _, resumed = trained
    seen = []
    again = train(synthtv, resumed.checkpoint, config=toy_config(epochs=3), features=features, dims=TOY_DIMS,
                  resume=True, on_event=seen.append)
    assert again.epochs == 3 and len(again.history) == 3
    assert seen[-1].kind == "nothing" and seen[-1].info["epoch"] == 3
    assert not [e for e in seen if e.kind in ("batch", "epoch")]


def test_resume_without_state_is_a_clear_error(synthtv, features, tmp_path):
    with pytest.raises(CheckpointError, match="--resume"):
        train(synthtv, tmp_path / "none", config=toy_config(), features=features, dims=TOY_DIMS, resume=True)


def test_tampered_state_is_refused(trained, synthtv, features, tmp_path):
    import shutil

    _, part, _ = trained
    for suffix in (".state.json", ".state.safetensors"):
        shutil.copy(str(part.checkpoint)[:-5] + suffix, tmp_path / f"x{suffix}")
    with (tmp_path / "x.state.safetensors").open("r+b") as fh:
        fh.seek(-8, os.SEEK_END)
        tail = fh.read(8)
        fh.seek(-8, os.SEEK_END)
        fh.write(bytes(b ^ 0xFF for b in tail))
    with pytest.raises(CheckpointError, match="does not match"):
        train(synthtv, tmp_path / "x", config=toy_config(), features=features, dims=TOY_DIMS, resume=True)


def test_bad_options_are_config_errors(synthtv, features, tmp_path):
    from tvcaption.config import ConfigError

    with pytest.raises(ConfigError, match="select"):
        train(synthtv, tmp_path / "m", features=features, select="BLEU")
    with pytest.raises(ConfigError, match="optimizer"):
        train(synthtv, tmp_path / "m", config=toy_config(optimizer="sgd"), features=features, dims=TOY_DIMS)


def test_dataset_without_val_split_is_refused(tmp_path, features):
    data = tmp_path / "captions.json"
    data.write_text(json.dumps({"captions": {"a.avi": ["a cat"], "b.avi": ["a dog"]}}))
    with pytest.raises(TvcaptionError, match="train split"):
        train(data, tmp_path / "m", features=features)


def test_select_by_validation_loss(synthtv, features, tmp_path):
    result = train(synthtv, tmp_path / "m", config=toy_config(epochs=2), features=features,
                   dims=ModelDims(hidden=8, attention=4, embedding=4, frames=4, pooling="mean", matching=False),
                   select="loss", val_clips=2)
    losses = [h["val"]["loss"] for h in result.history]
    assert result.best_score == pytest.approx(min(losses), rel=1e-5)
    assert result.history[0]["val"].keys() >= {"loss", "CIDEr"}
    assert json.loads(result.checkpoint.read_text())["meta"]["data"]["val_clips"] == 2


def test_memory_mapped_features_train_like_features_in_ram(synthtv, features, tmp_path):
    kw = dict(config=toy_config(epochs=1), features=features, dims=TOY_DIMS, val_clips=1)
    mapped = train(synthtv, tmp_path / "mapped", in_ram=False, **kw)
    in_ram = train(synthtv, tmp_path / "ram", in_ram=True, **kw)
    assert mapped.history[0]["train_loss"] == in_ram.history[0]["train_loss"]


def test_a_train_subset_reuses_the_whole_splits_feature_cache(synthtv, features, tmp_path):
    from pathlib import Path as P

    kw = dict(config=toy_config(epochs=1), features=features, dims=TOY_DIMS, val_clips=1)
    train(synthtv, tmp_path / "all", **kw)  # the whole split's cache exists from here on
    folders = set(P(features.cache_dir).iterdir())
    for in_ram in (True, False):
        part = train(synthtv, tmp_path / f"part{in_ram}", max_train_clips=3, in_ram=in_ram, **kw)
        meta = json.loads(part.checkpoint.read_text())["meta"]
        assert meta["data"]["train_clips"] == 3
        assert set(P(features.cache_dir).iterdir()) == folders  # nothing extracted again
    ram = json.loads((tmp_path / "partTrue.json").read_text())["meta"]["metrics"]
    mapped = json.loads((tmp_path / "partFalse.json").read_text())["meta"]["metrics"]
    assert ram == mapped


# -- two processes on gloo ------------------------------------------------------------------------
def _ddp_worker(rank: int, world: int, port: int, data: str, out: str, cache: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    result = train(data, out, config=toy_config(epochs=2), features=FeaturesConfig(device="cpu", cache_dir=cache),
                   dims=TOY_DIMS)
    Path(f"{out}.rank{rank}").write_text(json.dumps({"rank": rank, "epochs": result.epochs,
                                                     "validated": len(result.history)}))


def test_distributed_two_processes_on_gloo(synthtv, features, tmp_path):
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp"
    mp.spawn(_ddp_worker, args=(2, port, str(synthtv), str(out), features.cache_dir), nprocs=2, join=True)
    ranks = [json.loads(Path(f"{out}.rank{r}").read_text()) for r in (0, 1)]
    assert [r["epochs"] for r in ranks] == [2, 2]
    assert ranks[0]["validated"] == 2 and ranks[1]["validated"] == 0  # rank 0 validates and saves
    from tvcaption.checkpoint import load_checkpoint

    assert load_checkpoint(f"{out}.json").meta["data"]["train_clips"] == 8
    state = json.loads(Path(f"{out}.state.json").read_text())
    assert state["epoch"] == 2 and state["step"] == 4  # 8 clips / 2 ranks / 2 per rank = 2 steps per epoch


# -- the command line and the layout ------------------------------------------------------------------
def test_train_command_takes_model_sizes_from_model_dims(tmp_path, monkeypatch):
    """Sizes not given on the command line are ModelDims' defaults (written once, there)."""
    from typer.testing import CliRunner

    import tvcaption.train
    from tvcaption.cli import app
    from tvcaption.train import TrainResult

    calls = []

    def fake_train(data, out, **kw):
        calls.append(kw)
        return TrainResult(checkpoint=Path(f"{out}.json"), last=Path(f"{out}.last.json"), state=Path("s"),
                           best_epoch=1, best_score=0.5, select="CIDEr", epochs=1)

    monkeypatch.setattr(tvcaption.train, "train", fake_train)
    config = tmp_path / "tvcaption.toml"
    config.write_text("")
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(tmp_path), "--out", str(tmp_path / "m"), "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert calls[-1]["dims"] == ModelDims() and calls[-1]["on_event"] is not None
    result = runner.invoke(app, ["train", str(tmp_path), "--out", str(tmp_path / "m"), "--config", str(config),
                                 "--hidden", "16", "--pooling", "mean", "--no-matching", "--temporal-delta"])
    assert result.exit_code == 0, result.output
    assert calls[-1]["dims"] == ModelDims(hidden=16, pooling="mean", matching=False, temporal_delta=True)


def test_training_and_evaluation_import_no_circle_and_stay_small():
    import importlib.util

    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("check_layout", repo / "scripts" / "check_layout.py")
    layout = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(layout)
    ours = ("train", "evaluate", "clips", "slots", "views_train", "checkpoint", "features/cache", "features.cache")
    findings = [f for f in layout.check(repo / "tvcaption") if any(f"tvcaption.{m}" in f or f"tvcaption/{m}." in f
                                                                   for m in ours)]
    assert findings == []


def test_the_library_draws_nothing():
    """Progress bars and tables are the CLI's: the training side of the library imports no UI."""
    import subprocess
    import sys

    code = ("import sys, tvcaption.train, tvcaption.evaluate, tvcaption.features.cache, tvcaption.data.synth\n"
            "assert 'rich' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    package = Path(__file__).resolve().parents[1] / "tvcaption"  # torch.hub imports tqdm itself; we do not
    assert not [p.name for p in package.rglob("*.py") if "tqdm" in p.read_text(encoding="utf-8")]
