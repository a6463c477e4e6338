"""The paper's ablation (Table 3) as a rerunnable benchmark.

Four encoders, trained on the same data with the same budget (epochs, batch, optimiser), N seeds
each, evaluated on the test split:

    lrcn            LRCN: each frame's 7x7 grid mean-pooled, then an LSTM (cross-entropy only)
    lrcn+matching   the same + the ranking loss (eqs 27-28)
    lstap-avg       L-STAP with uniform pooling of the local states (eq 8) + matching
    lstap-att       L-STAP with attention pooling (eqs 9-10) + matching

Reported: each variant's corpus metrics (mean and std over seeds) and slot accuracy (SynthTV),
the two floors (constant and random training caption), and per-clip **paired bootstrap**
confidence intervals of the differences between variants (each step of the ablation, and
L-STAP att against the LRCN baseline) for per-clip CIDEr and per-clip slot accuracy, on the
whole test split and on its hard subset, and for the actor's kind and the action on one-actor
clips (right or wrong per clip, read from the cached captions). A clip's score is first
averaged over the seeds; the bootstrap then resamples clips (the unit the test set samples),
keeping the pairing.

Runs are cached: a finished (variant, seed) leaves ``OUT/runs/<variant>-s<seed>.eval.json`` and
is skipped by a rerun (``--force`` retrains). Results: ``OUT/ablation.json`` and
``OUT/ablation.md``.

    python bench/ablation.py --data data/synthtv --out bench/results/ablation --seeds 3 --epochs 30
    python bench/ablation.py --synth 2000 --out bench/results/ablation       # generate SynthTV first
    python bench/ablation.py --toy --out runs/ablation                       # smoke test, ~1 min on CPU
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

VARIANTS: dict[str, dict[str, Any]] = {
    "lrcn": {"pooling": "mean", "matching": False, "label": "LRCN (mean pooling)"},
    "lrcn+matching": {"pooling": "mean", "matching": True, "label": "+ matching loss"},
    "lstap-avg": {"pooling": "avg", "matching": True, "label": "+ L-STAP avg"},
    "lstap-att": {"pooling": "att", "matching": True, "label": "+ L-STAP att"},
    # not in the paper: L-STAP att with a learned per-position input bias (see tvcaption/model/lstap.py)
    "lstap-att+pos": {"pooling": "att", "matching": True, "position_bias": True, "label": "+ position bias (ours)"},
}
# (better, worse): each step of Table 3, then the whole ablation
COMPARISONS = (("lrcn+matching", "lrcn"), ("lstap-avg", "lrcn+matching"), ("lstap-att", "lstap-avg"),
               ("lstap-att", "lrcn"), ("lstap-att+pos", "lstap-att"))
TABLE_KEYS = ("Bleu_4", "ROUGE_L", "METEOR", "CIDEr")  # Table 3's columns
SINGLE_SLOTS = ("kind", "action", "position")  # bootstrapped per clip on one-actor clips


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Difference:
    a: str
    b: str
    key: str  # CIDEr | slots (per-clip slot accuracy) | kind | action (right or not, one-actor clips)
    subset: str  # all | hard | single
    clips: int
    mean: float  # mean over clips of a - b
    low: float  # 95% bootstrap interval
    high: float
    p_not_better: float  # share of bootstrap means <= 0 (one-sided)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int = 10000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float, float, float]:
    """Mean of a - b over paired items, its percentile interval and P(mean <= 0) under resampling."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.size == 0:
        return (math.nan, math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for lo in range(0, resamples, 1000):  # chunks bound the memory of (resamples, clips) indices
        n = min(1000, resamples - lo)
        means[lo:lo + n] = d[rng.integers(0, d.size, size=(n, d.size))].mean(axis=1)
    alpha = (1.0 - level) / 2
    return (float(d.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha)),
            float((means <= 0).mean()))


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _train_view(quiet: bool):
    """Training's log lines and bars on stderr (tvcaption.views_train), or None when ``quiet``."""
    if quiet:
        yield None
        return
    from rich.console import Console

    from tvcaption.views_train import TrainView

    with TrainView(Console(stderr=True)) as view:
        yield view


def run_variant(name: str, seed: int, data: Path, out: Path, args: argparse.Namespace, floors: bool) -> dict[str, Any]:
    """Train one (variant, seed) and evaluate it on the test split; cached in OUT/runs."""
    from tvcaption.config import FeaturesConfig, TrainConfig
    from tvcaption.decoding import DecodingOptions
    from tvcaption.evaluate import evaluate
    from tvcaption.model import ModelDims
    from tvcaption.train import train

    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    cached = runs / f"{name}-s{seed}.eval.json"
    if cached.is_file() and not args.force:
        return json.loads(cached.read_text())
    variant = VARIANTS[name]
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                         seed=seed)
    features = FeaturesConfig(device=args.device, threads=args.threads, cache_dir=str(args.cache))
    dims = ModelDims(hidden=args.hidden, attention=args.attention, embedding=args.embedding,
                     frames=args.frames, pooling=variant["pooling"], matching=variant["matching"],
                     input_rank=args.input_rank, position_bias=variant.get("position_bias", False),
                     temporal_delta=args.temporal_delta)
    t0 = time.perf_counter()
    with _train_view(args.quiet) as view:
        result = train(data, runs / f"{name}-s{seed}", config=config, features=features, dims=dims,
                       val_clips=args.val_clips, max_train_clips=args.train_clips, select=args.select,
                       on_event=view)
    t_train = time.perf_counter() - t0
    evaluation = evaluate(result.checkpoint, args.test_data or data, "test", features=features,
                          decoding=DecodingOptions(beam_size=args.beam, max_len=30), floors=floors, seed=seed)
    record = {"variant": name, "seed": seed, "train_seconds": round(t_train, 2),
              "best_epoch": result.best_epoch, "best_val": result.best_score,
              "eval": evaluation.to_json(per_clip=True)}
    cached.write_text(json.dumps(record, indent=1))
    return record


def single_actor_slots(records: list[dict[str, Any]], slots: dict[str, dict], ids: list[str]) -> dict[str, np.ndarray]:
    """Per clip of ``ids`` (one-actor clips): is the actor's kind / the action / the place right
    (1 or 0), averaged over the runs, read from each run's generated caption against the stored
    slots. The place is judged only where the references name one (NaN elsewhere)."""
    from tvcaption.data import slot_accuracy

    judged = [[slot_accuracy(r["eval"]["captions"][c], slots[c]) for c in ids] for r in records]  # runs x clips
    result = {slot: np.mean([[float(bool(j[slot])) for j in run] for run in judged], axis=0) for slot in SINGLE_SLOTS}
    result["position"][[not slots[c].get("says_position") for c in ids]] = np.nan
    return result


def analyse(records: list[dict[str, Any]], resamples: int, seed: int,
            slots: dict[str, dict] | None = None) -> dict[str, Any]:
    """Per-variant means over seeds, floors, and paired bootstrap differences.

    ``slots`` (clip id -> stored slots of the test clips) adds the differences in kind and action
    accuracy on one-actor clips (subset ``single``), the two the shipped model is held to."""
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_variant.setdefault(r["variant"], []).append(r)
    first = records[0]["eval"]
    subsets = {"all": list(first["per_clip"]), "hard": list(first.get("subsets", {}).get("hard", []))}
    has_slots = bool(first.get("slots"))

    variants: dict[str, Any] = {}
    per_clip: dict[str, dict[str, np.ndarray]] = {}
    single = list(first.get("subsets", {}).get("single", [])) if slots and "captions" in first else []
    per_single: dict[str, dict[str, np.ndarray]] = {}
    for name, runs in by_variant.items():
        row: dict[str, Any] = {"label": VARIANTS[name]["label"], "seeds": [r["seed"] for r in runs],
                               "train_seconds": _mean_std([r["train_seconds"] for r in runs])[0]}
        for key in ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"):
            row[key] = _mean_std([r["eval"]["metrics"][key] for r in runs])
        if has_slots:
            for sub in ("all", "hard", "single"):
                row[f"slots_{sub}"] = _mean_std([(r["eval"]["slots"] or {}).get(sub, {}).get("overall", math.nan)
                                                 for r in runs])
            for slot in SINGLE_SLOTS:  # on one-actor clips: kind and action are the shipped model's targets
                row[f"single_{slot}"] = _mean_std([(r["eval"]["slots"] or {}).get("single", {}).get(slot, math.nan)
                                                   for r in runs])
        variants[name] = row
        keys = ["CIDEr"] + (["slots"] if has_slots else [])
        per_clip[name] = {k: np.mean([[r["eval"]["per_clip"][c].get(k, math.nan) for c in subsets["all"]]
                                      for r in runs], axis=0) for k in keys}
        if single:
            per_single[name] = single_actor_slots(runs, slots, single)

    floors = {k: {"metrics": v["metrics"], "slots": v.get("slots"), "caption": v.get("caption")}
              for k, v in (first.get("floors") or {}).items()}
    index = {c: i for i, c in enumerate(subsets["all"])}
    diffs: list[Difference] = []
    for a, b in COMPARISONS:
        if a not in per_clip or b not in per_clip:
            continue
        for key in per_clip[a]:
            for sub, ids in subsets.items():
                rows = np.asarray([index[c] for c in ids], dtype=np.int64)
                mean, low, high, p = paired_bootstrap(per_clip[a][key][rows], per_clip[b][key][rows], resamples, seed)
                diffs.append(Difference(a, b, key, sub, len(rows), mean, low, high, p))
        if a in per_single and b in per_single:
            for key in SINGLE_SLOTS:
                judged = ~np.isnan(per_single[a][key])  # the place: only clips whose references name one
                if judged.any():
                    mean, low, high, p = paired_bootstrap(per_single[a][key][judged], per_single[b][key][judged],
                                                          resamples, seed)
                    diffs.append(Difference(a, b, key, "single", int(judged.sum()), mean, low, high, p))
    counts = {k: len(v) for k, v in subsets.items()}
    if single:
        counts["single"] = len(single)
    return {"variants": variants, "floors": floors, "differences": [dataclasses.asdict(d) for d in diffs],
            "subsets": counts}


def markdown(summary: dict[str, Any], settings: dict[str, Any]) -> str:
    """The results as markdown: Table 3 with seeds' mean ± std, then the bootstrap differences."""
    def pm(value: tuple[float, float], scale: float = 100.0) -> str:
        m, s = value
        return "-" if not math.isfinite(m) else f"{m * scale:.1f} ± {s * scale:.1f}"

    has_slots = any("slots_all" in v for v in summary["variants"].values())
    slot_cols = ["slots", "slots (hard)"] + [f"{slot} (1 actor)" for slot in SINGLE_SLOTS]
    cols = list(TABLE_KEYS) + (slot_cols if has_slots else [])
    lines = [f"# Ablation (paper Table 3) on {settings['data']}", "",
             f"{settings['seeds']} seed(s) per variant, {settings['epochs']} epochs, batch {settings['batch_size']}, "
             f"{settings['optimizer']} lr {settings['lr']:g}, hidden {settings['hidden']}, frames {settings['frames']}, "
             f"input rank {settings.get('input_rank', 0)}, "
             f"{settings.get('train_clips') or 'all'} training clips"
             f"{', temporal delta for every variant' if settings.get('temporal_delta') else ''}, "
             f"beam {settings['beam']}. Test split: {summary['subsets']['all']} clips "
             f"({summary['subsets']['hard']} hard). Scores x100, mean ± std over seeds.", "",
             "| model | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, row in summary["variants"].items():
        cells = [pm(row[k]) for k in TABLE_KEYS]
        if has_slots:
            cells += [pm(row["slots_all"]), pm(row["slots_hard"])] + [pm(row[f"single_{s}"]) for s in SINGLE_SLOTS]
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    for name, floor in summary["floors"].items():
        cells = [f"{floor['metrics'][k] * 100:.1f}" for k in TABLE_KEYS]
        if has_slots:
            slots = floor.get("slots") or {}
            cells += [f"{(slots.get(s) or {}).get('overall', math.nan) * 100:.1f}" for s in ("all", "hard")]
            cells += [f"{(slots.get('single') or {}).get(k, math.nan) * 100:.1f}" for k in SINGLE_SLOTS]
        lines.append(f"| floor: {name} caption | " + " | ".join(cells) + " |")
    lines += ["", "## Paired bootstrap of per-clip differences", "",
              f"{settings['resamples']} resamples of test clips; per-clip scores averaged over seeds first. "
              "CIDEr as pycocoevalcap reports it (x1), slot accuracy in [0, 1]; kind and action: share of "
              "one-actor clips whose caption gets it right; position: of those whose references name a place.", "",
              "| comparison | score | subset | clips | mean Δ | 95% CI | P(Δ ≤ 0) |", "|---|---|---|---:|---:|---|---:|"]
    for d in summary["differences"]:
        lines.append(f"| {d['a']} − {d['b']} | {d['key']} | {d['subset']} | {d['clips']} | {d['mean']:+.3f} | "
                     f"[{d['low']:+.3f}, {d['high']:+.3f}] | {d['p_not_better']:.3f} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
TOY = {"epochs": 2, "batch_size": 4, "lr": 1e-2, "hidden": 16, "attention": 8, "embedding": 8, "frames": 4,
       "seeds": 1, "resamples": 500, "beam": 1, "synth": 8, "synth_size": 64, "threads": 1}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("data")
    src.add_argument("--data", type=Path, help="dataset folder (SynthTV, MSR-VTT, MSVD) with train/val/test splits")
    src.add_argument("--test-data", type=Path,
                     help="score on this dataset's test split instead (e.g. SynthTV generated with another seed)")
    src.add_argument("--synth", type=int, default=0, help="generate SynthTV with this many training clips into OUT/data")
    src.add_argument("--synth-size", type=int, default=128, help="SynthTV frame side in pixels")
    p.add_argument("--out", type=Path, required=True, help="folder for runs, ablation.json and ablation.md")
    p.add_argument("--cache", type=Path, help="feature cache folder (default OUT/features)")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--optimizer", default="rmsprop", choices=["rmsprop", "adam"])
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--attention", type=int, default=256)
    p.add_argument("--embedding", type=int, default=300)
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--input-rank", type=int, default=0, help="low-rank input projection (0 = full rank, the paper)")
    p.add_argument("--temporal-delta", action="store_true",
                   help="every variant sees each feature beside its change from the clip mean (not in the paper)")
    p.add_argument("--train-clips", type=int, default=0,
                   help="train on the first N train clips only (0 = all); reuses the whole split's feature cache")
    p.add_argument("--val-clips", type=int, default=0, help="validate on at most this many clips (0 = all)")
    p.add_argument("--select", default="CIDEr", help="validation key that picks each run's best epoch")
    p.add_argument("--beam", type=int, default=3, help="beam size for the test captions")
    p.add_argument("--resamples", type=int, default=10000, help="bootstrap resamples")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = all)")
    p.add_argument("--force", action="store_true", help="retrain runs that are already done")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--toy", action="store_true", help="tiny everything (smoke test): " + ", ".join(f"{k}={v}" for k, v in TOY.items()))
    args = p.parse_args(argv)
    if args.toy:
        for key, value in TOY.items():
            setattr(args, key, value)
    if args.data is None and not args.synth:
        p.error("give --data PATH, --synth N or --toy")
    args.cache = args.cache or args.out / "features"
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.data
    if data is None:
        from tvcaption.data import generate_synthtv

        data = args.out / "data"
        if not (data / "videodatainfo.json").is_file():
            n = args.synth
            generate_synthtv(data, train=n, val=max(4, n // 10), test=max(4, n // 4), seed=0, size=args.synth_size)
    started = time.perf_counter()
    records = []
    for seed in range(args.seeds):
        for name in args.variants:
            records.append(run_variant(name, seed, data, args.out, args, floors=not records))
            print(f"{name} seed {seed}: CIDEr {records[-1]['eval']['metrics']['CIDEr']:.3f}, "
                  f"trained in {records[-1]['train_seconds']:.0f} s", flush=True)
    from tvcaption.data import read_dataset

    slots = {c.id: c.slots for c in read_dataset(args.test_data or data) if c.slots}
    summary = analyse(records, args.resamples, seed=0, slots=slots)
    settings = {"data": str(data), **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                                      if k not in ("data", "out", "cache")}}
    report = {"settings": settings, **summary, "seconds": round(time.perf_counter() - started, 1)}
    from tvcaption.evaluate import json_safe

    (args.out / "ablation.json").write_text(json.dumps(json_safe(report), indent=1) + "\n")
    (args.out / "ablation.md").write_text(markdown(summary, settings))
    print(f"wrote {args.out / 'ablation.md'} and {args.out / 'ablation.json'}")
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
