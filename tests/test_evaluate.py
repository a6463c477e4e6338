"""Metrics (pycocoevalcap wrapper) on known values, floors, evaluate() on a toy model, the ablation smoke run."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from needs import need_module
from tvcaption.metrics import METRIC_KEYS, metric_in_range, score_captions

needs_java = pytest.mark.usefixtures("needs_java")  # pycocoevalcap's tokenizer and METEOR run on java
REPO = Path(__file__).resolve().parents[1]


# -- metrics on known values ----------------------------------------------------------------------
@needs_java
def test_identical_hypotheses_and_references_score_the_maximum():
    refs = {"a": "a man is singing on a stage", "b": "a cat plays with a red ball", "c": "two dogs run on the grass"}
    scores = score_captions(refs, {k: [v] for k, v in refs.items()})
    assert list(scores.corpus) == list(METRIC_KEYS)
    for n in range(1, 5):
        assert scores.corpus[f"Bleu_{n}"] == pytest.approx(1.0, abs=1e-6)
    assert scores.corpus["METEOR"] == pytest.approx(1.0)
    assert scores.corpus["ROUGE_L"] == pytest.approx(1.0)
    assert scores.corpus["CIDEr"] == pytest.approx(10.0)  # pycocoevalcap's CIDEr is x10
    assert scores.per_clip["b"]["CIDEr"] == pytest.approx(10.0)


@needs_java
def test_known_values_on_a_short_hypothesis():
    # "a man" against "a man is singing": unigram precision 1, brevity penalty exp(1 - 4/2);
    # ROUGE-L: LCS 2, P = 1, R = 0.5, F(beta=1.2) = (1 + 1.44) * 0.5 / (0.5 + 1.44)
    scores = score_captions({"x": "A man."}, {"x": ["a man is singing"]}, meteor=False)
    assert scores.corpus["Bleu_1"] == pytest.approx(math.exp(-1), rel=1e-6)
    assert scores.corpus["ROUGE_L"] == pytest.approx(2.44 * 0.5 / 1.94, rel=1e-6)
    assert "METEOR" not in scores.corpus
    assert scores.corpus["CIDEr"] == 0.0  # one clip: every n-gram has document frequency 1, idf 0


@needs_java
def test_tokenisation_matches_coco_and_empty_captions_score_zero():
    scores = score_captions({"a": "", "b": "A CAT, playing!", "c": "dogs"},
                            {"a": ["a man sings"], "b": ["a cat playing"], "c": ["two dogs run"]})
    assert all(v == 0.0 for v in scores.per_clip["a"].values())
    assert scores.per_clip["b"]["Bleu_1"] == pytest.approx(1.0, abs=1e-6)  # case and punctuation dropped
    assert all(metric_in_range(k, v) for k, v in scores.corpus.items())


def test_score_captions_refuses_missing_references():
    with pytest.raises(ValueError, match="no references"):
        score_captions({"a": "x", "b": "y"}, {"a": ["x"]})


# -- floors -------------------------------------------------------------------------------------
def test_constant_caption_is_the_most_frequent_normalised_one():
    from tvcaption.evaluate import constant_caption

    train = [("A man sings.", "a dog runs"), ("a man sings", "A cat"), ("a cat",)]
    assert constant_caption(train) == "a cat"  # tie between "a man sings" and "a cat": alphabetical
    assert constant_caption([("A man sings.", "a man sings", "a cat")]) == "a man sings"


def test_random_captions_are_seeded_training_captions():
    from tvcaption.evaluate import random_captions

    train = [("a", "b"), ("c",), ("d", "e", "f")]
    one = random_captions(["x", "y", "z"], train, seed=3)
    assert one == random_captions(["x", "y", "z"], train, seed=3)
    assert set(one.values()) <= set("abcdef")
    many = random_captions([str(i) for i in range(200)], train, seed=0)
    assert set(many.values()) == set("abcdef")


# -- evaluate() on a toy model ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    need_module("torch")
    from tvcaption.config import FeaturesConfig, TrainConfig
    from tvcaption.data import generate_synthtv
    from tvcaption.model import ModelDims
    from tvcaption.train import train

    root = tmp_path_factory.mktemp("toy")
    data = generate_synthtv(root / "synthtv", train=8, val=4, test=4, size=64, seed=1)
    features = FeaturesConfig(device="cpu", threads=1, cache_dir=str(root / "features"))
    result = train(data, root / "model", config=TrainConfig(epochs=2, batch_size=4, lr=1e-2), features=features,
                   dims=ModelDims(hidden=16, attention=8, embedding=8, frames=4))
    return data, features, result.checkpoint


@needs_java
def test_evaluate_reports_every_metric_slots_and_floors(toy, tmp_path):
    from tvcaption.decoding import DecodingOptions
    from tvcaption.evaluate import EvalResult, evaluate
    from tvcaption.views_train import print_eval

    data, features, checkpoint = toy
    captions_out = tmp_path / "captions.json"
    stages = []
    result = evaluate(checkpoint, data, "test", features=features, captions_out=captions_out,
                      decoding=DecodingOptions(beam_size=2, max_len=12),
                      on_progress=lambda *call: stages.append(call))
    assert isinstance(result, EvalResult) and result.clips == 4 and result.split == "test"
    assert list(result.metrics) == list(METRIC_KEYS)
    assert all(metric_in_range(k, v) for k, v in result.metrics.items()), result.metrics
    assert set(result.captions) == set(result.per_clip) and len(result.captions) == 4
    assert all(len(c.split()) <= 12 for c in result.captions.values())

    assert {"all", "hard", "single"} <= set(result.slots)
    for row in result.slots.values():
        assert {"clips", "overall", "exact", "kind", "colour", "size", "action", "position", "order"} <= set(row)
        assert 0.0 <= row["overall"] <= 1.0 or row["clips"] == 0
    assert result.slots["all"]["clips"] == 4
    assert all(0.0 <= s["slots"] <= 1.0 for s in result.per_clip.values())

    assert set(result.floors) == {"constant", "random"}
    constant = result.floors["constant"]
    assert len(set(constant.captions.values())) == 1
    assert list(constant.metrics) == list(METRIC_KEYS) and constant.slots["all"]["clips"] == 4
    assert all(metric_in_range(k, v) for f in result.floors.values() for k, v in f.metrics.items())

    doc = result.to_json()
    assert json.loads(json.dumps(doc))["metrics"]["CIDEr"] == pytest.approx(result.metrics["CIDEr"])
    assert "per_clip" not in doc and "per_clip" in result.to_json(per_clip=True)
    assert doc["floors"]["constant"]["caption"] == next(iter(constant.captions.values()))

    written = json.loads(captions_out.read_text())
    assert [r["id"] for r in written] == list(result.captions)
    assert all(r["caption"] == result.captions[r["id"]] and r["references"] for r in written)

    from rich.console import Console

    buf = io.StringIO()
    print_eval(result, Console(file=buf, width=140))
    text = buf.getvalue()
    assert "CIDEr" in text and "constant" in text and "hard" in text
    assert stages[0] == ("features", 0, 4) and ("features", 4, 4) in stages  # the test clips were not cached yet
    assert stages[-1] == ("captions", 4, 4)


@needs_java
def test_evaluate_limits_clips_writes_tsv_and_skips_floors(toy, tmp_path):
    from tvcaption.decoding import DecodingOptions
    from tvcaption.evaluate import evaluate

    data, features, checkpoint = toy
    result = evaluate(checkpoint, data, "val", features=features, max_clips=2, floors=False,
                      decoding=DecodingOptions(beam_size=1), captions_out=tmp_path / "c.tsv")
    assert result.clips == 2 and result.floors == {}
    lines = (tmp_path / "c.tsv").read_text().splitlines()
    assert len(lines) == 2 and all(len(line.split("\t")) == 2 for line in lines)


@needs_java
def test_evaluate_command_prints_the_tables_or_json(toy, tmp_path):
    from typer.testing import CliRunner

    from tvcaption.cli import app

    data, features, checkpoint = toy
    config = tmp_path / "tvcaption.toml"
    config.write_text(f'[features]\ndevice = "cpu"\nthreads = 1\ncache_dir = "{features.cache_dir}"\n')
    args = ["evaluate", "--model", str(checkpoint), "--data", str(data), "--split", "val", "--max-clips", "2",
            "--no-floors", "--beam-size", "1", "--config", str(config)]
    runner = CliRunner()
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "CIDEr" in result.output and "slot accuracy" in result.output
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["clips"] == 2


@needs_java
def test_evaluate_on_real_msvd_clips_takes_floors_from_the_training_data(toy, shared_data):
    from tvcaption.decoding import DecodingOptions
    from tvcaption.evaluate import evaluate

    _, features, checkpoint = toy
    result = evaluate(checkpoint, shared_data / "captioned" / "msvd", "test", features=features, max_clips=2,
                      decoding=DecodingOptions(beam_size=1))
    assert result.clips == 2 and result.slots is None  # real clips: no ground-truth slots
    assert all(metric_in_range(k, v) for k, v in result.metrics.items())
    assert set(result.floors) == {"constant", "random"}  # the MSVD folder has no train split: SynthTV's


def test_evaluate_unknown_split_is_a_clear_error(toy):
    from tvcaption.errors import TvcaptionError
    from tvcaption.evaluate import evaluate

    data, features, checkpoint = toy
    with pytest.raises(TvcaptionError, match="no clips in the 'holdout' split"):
        evaluate(checkpoint, data, "holdout", features=features)


# -- the ablation benchmark -----------------------------------------------------------------------
def _ablation_module():
    spec = importlib.util.spec_from_file_location("ablation", REPO / "bench" / "ablation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["ablation"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_paired_bootstrap_interval():
    ablation = _ablation_module()
    rng = np.random.default_rng(0)
    b = rng.random(300)
    mean, low, high, p = ablation.paired_bootstrap(b + 0.1, b, resamples=2000, seed=1)
    assert mean == pytest.approx(0.1) and low == pytest.approx(0.1) and high == pytest.approx(0.1) and p == 0.0
    noisy = b + rng.normal(0.05, 0.2, size=300)
    mean, low, high, p = ablation.paired_bootstrap(noisy, b, resamples=2000, seed=1)
    assert low < mean < high and low > 0 and p < 0.05
    mean, low, high, p = ablation.paired_bootstrap(b, b + rng.normal(0, 0.2, size=300), resamples=2000, seed=1)
    assert low < 0 < high


@needs_java
def test_ablation_smoke_run(tmp_path, toy):
    ablation = _ablation_module()
    data, features, _ = toy
    report = ablation.main(["--toy", "--data", str(data), "--out", str(tmp_path), "--cache", features.cache_dir,
                            "--quiet", "--resamples", "200", "--temporal-delta"])
    assert set(report["variants"]) == set(ablation.VARIANTS)
    assert set(report["floors"]) == {"constant", "random"}
    comparisons = {(d["a"], d["b"], d["key"], d["subset"]) for d in report["differences"]}
    assert ("lstap-att", "lrcn", "CIDEr", "all") in comparisons and ("lstap-att", "lrcn", "slots", "hard") in comparisons
    single = [d for d in report["differences"] if d["subset"] == "single"]
    assert {(d["a"], d["b"], d["key"]) for d in single} >= {("lstap-att", "lrcn", "kind"), ("lstap-att", "lrcn", "action")}
    assert all(d["clips"] == report["subsets"]["single"] > 0 and -1 <= d["mean"] <= 1 for d in single)
    md = (tmp_path / "ablation.md").read_text()
    assert "L-STAP att" in md and "95% CI" in md and "action (1 actor)" in md and "temporal delta" in md
    assert json.loads((tmp_path / "ablation.json").read_text())["settings"]["seeds"] == 1
    # rerunnable: a second run reuses the finished runs
    again = ablation.main(["--toy", "--data", str(data), "--out", str(tmp_path), "--cache", features.cache_dir,
                           "--quiet", "--resamples", "200", "--temporal-delta"])
    assert again["variants"]["lstap-att"]["CIDEr"] == report["variants"]["lstap-att"]["CIDEr"]
    assert again["seconds"] < report["seconds"]


def test_caption_only_corpus_is_a_clear_error(toy, shared_data):
    from tvcaption.errors import TvcaptionError
    from tvcaption.evaluate import evaluate

    _, features, checkpoint = toy
    with pytest.raises(TvcaptionError, match="no video file"):
        evaluate(checkpoint, shared_data / "captions" / "msvd" / "MSVD_val.tsv", "val", features=features)


def test_ablation_single_actor_slots_read_from_captions(toy):
    """A reference caption names the right kind and action; another clip's caption (a different
    kind or action) does not."""
    from tvcaption.data import read_dataset

    ablation = _ablation_module()
    data, _, _ = toy
    clips = [c for c in read_dataset(data) if c.slots and not c.slots.get("second")]
    slots = {c.id: c.slots for c in clips}
    ids = [c.id for c in clips]
    right = ablation.single_actor_slots([{"eval": {"captions": {c.id: c.captions[0] for c in clips}}}], slots, ids)
    assert right["kind"].tolist() == [1.0] * len(ids) and right["action"].tolist() == [1.0] * len(ids)
    says = np.array([bool(c.slots["says_position"]) for c in clips])
    assert says.any() and not says.all(), "the toy split needs clips with and without a named place"
    assert right["position"][says].tolist() == [1.0] * says.sum() and np.isnan(right["position"][~says]).all()
    a, b = next((a, b) for a in clips for b in clips
                if a.slots["kind"] != b.slots["kind"] and a.slots["action"] != b.slots["action"])
    runs = [{"eval": {"captions": {a.id: a.captions[0]}}}, {"eval": {"captions": {a.id: b.captions[0]}}}]
    half = ablation.single_actor_slots(runs, slots, [a.id])  # right in one run of two
    assert half["kind"].tolist() == [0.5] and half["action"].tolist() == [0.5]


def test_position_named_tells_omission_from_misplacement(toy):
    from tvcaption.data import parse_caption, read_dataset
    from tvcaption.slots import score_slots

    data, _, _ = toy

    def says_position(caption: str) -> bool:
        return any(e.get("position") for e in parse_caption(caption))

    every = [c for c in read_dataset(data) if c.slots]
    clips = [c for c in every if c.slots.get("says_position") and any(map(says_position, c.captions))]
    assert clips, "no toy clip whose references name a position"
    plain = next(r for c in every for r in c.captions if not says_position(r))  # names no place
    ids = {"all": tuple(c.id for c in clips)}
    named = {c.id: next(r for r in c.captions if says_position(r)) for c in clips}
    with_position, _ = score_slots(named, clips, ids)
    without, _ = score_slots({c.id: plain for c in clips}, clips, ids)
    assert with_position["all"]["position_named"] == 1.0 and with_position["all"]["position"] == 1.0
    assert without["all"]["position_named"] == 0.0 and without["all"]["position"] == 0.0
