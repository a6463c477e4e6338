"""How well the caption's out-of-domain mark separates SynthTV from real recordings.

In domain: the clips of a fresh SynthTV test split (a seed the model never trained on). Out of
domain: every scene of every recording in ../shared/data/scenes and ../shared/data/captioned
(real footage, plus three synthetic test patterns, reported apart too). Both go through the
same path as ``tvcaption index`` (scene detection, frame sampling, backbone, the caption
analyser with the checkpoint's domain statistics), with only the caption analyser running, and
every scene's caption annotation is read back: its domain distance, its confidence
(length-normalised log-probability) and its mark.

Reported: AUROC of the domain distance and of (minus) the confidence at telling real scenes
from SynthTV clips, and the share marked out of domain on each side. Writes
bench/results/domain.json and domain.md.

    tvcaption synth bench/work/domain/synthtv-test --train 0 --val 0 --test 500 --seed 1
    python bench/domain.py --test-data bench/work/domain/synthtv-test --test-clips 300
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tvcaption.domain import auroc

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mkv", ".mov", ".ts", ".webm"}
TEST_PATTERNS = {"counter.mp4", "fades.mp4", "delayed_start.mp4"}  # synthetic, not real footage


def caption_rows(paths: list[Path], config, source: str, store=None) -> list[dict]:
    """One row per scene of each recording: its caption, distance, confidence and mark; with
    ``store``, the scenes are also stored there as ``tvcaption index`` stores them."""
    from tvcaption.engine import Engine
    from tvcaption.pipeline import caption_recording

    engine = Engine(config)
    rows = []
    for i, path in enumerate(paths, 1):
        result = caption_recording(path, config, engine)
        if store is not None:
            store.save_result(store.claim(str(path.resolve()), f"bench-{i}", "bench"), result.scenes, engine.model_name)
        for scene in result.scenes:
            caption = scene.of_kind("caption")[0]
            data = dict(caption.data or {})
            rows.append({"source": source, "file": path.name, "start": round(scene.start, 3),
                         "end": round(scene.end, 3), "caption": caption.text, "confidence": caption.score,
                         "distance": data.get("domain_distance"), "out_of_domain": data.get("out_of_domain"),
                         "blank": bool(data.get("blank"))})
        if i % 50 == 0 or i == len(paths):
            print(f"  {source}: {i}/{len(paths)} recordings, {len(rows)} scenes", flush=True)
    return rows


def synthtv_test_videos(data: Path, clips: int) -> list[Path]:
    from tvcaption.clips import split_clips
    from tvcaption.data import read_dataset

    test = split_clips(read_dataset(data), "test")
    return [Path(c.video) for c in test[:clips] if c.video]


def real_videos(folders: list[Path]) -> list[Path]:
    return sorted(p for folder in folders if folder.is_dir() for p in folder.rglob("*")
                  if p.suffix.lower() in VIDEO_EXTENSIONS)


def search_check(store, word: str) -> dict:
    """What a search for ``word`` over the stored real recordings returns, by default and with
    all captions: hits, and hits showing a caption that holds the word."""
    from tvcaption.db.search import search

    out = {"word": word}
    for name, flag in (("default", False), ("all_captions", True)):
        hits = search(store, word, limit=1000, all_captions=flag)
        out[name] = {"hits": len(hits), "hits_showing_a_caption_with_the_word":
                     sum(word in h.caption.split() for h in hits)}
    return out


def commonest_noun(rows: list[dict]) -> str:
    """The commonest SynthTV object word in the real scenes' captions (what a search would hit)."""
    from collections import Counter

    kinds = {"cat", "kitten", "cup", "rocket", "astronaut", "spacewoman", "cameraman", "photographer", "horse",
             "pony", "coin", "motorcycle", "bike", "planet", "globe", "orb", "flag"}
    counts = Counter(w for r in rows for w in r["caption"].split() if w in kinds)
    return counts.most_common(1)[0][0] if counts else "horse"


def share(rows: list[dict], key: str = "out_of_domain") -> float:
    return float(np.mean([bool(r[key]) for r in rows])) if rows else float("nan")


def summarise(synth: list[dict], real: list[dict]) -> dict:
    footage = [r for r in real if r["file"] not in TEST_PATTERNS]
    dist = lambda rows: np.array([r["distance"] for r in rows], dtype=float)
    conf = lambda rows: np.array([r["confidence"] for r in rows], dtype=float)
    horse = [r for r in real if "horse" in r["caption"].split()]
    return {
        "synthtv_clips": len(synth), "real_scenes": len(real), "real_footage_scenes": len(footage), "real_recordings": len({r["file"] for r in real}),
        "auroc_distance": auroc(dist(synth), dist(real)),
        "auroc_confidence": auroc(-conf(synth), -conf(real)),  # lower confidence = more likely real
        "auroc_distance_footage_only": auroc(dist(synth), dist(footage)),
        "marked_ood_synthtv": share(synth), "marked_ood_real": share(real),
        "marked_ood_real_footage_only": share(footage),
        "blank_synthtv": share(synth, "blank"), "blank_real": share(real, "blank"),
        "blank_real_scenes": [f"{r['file']} {r['start']}-{r['end']}" for r in real if r["blank"]],
        "distance_median_synthtv": float(np.median(dist(synth))), "distance_median_real": float(np.median(dist(real))),
        "confidence_median_synthtv": float(np.median(conf(synth))), "confidence_median_real": float(np.median(conf(real))),
        "real_captions_with_horse": len(horse), "real_horse_captions_marked": sum(bool(r["out_of_domain"]) for r in horse),
        "real_unmarked": [f"{r['file']} {r['start']}-{r['end']}: {r['caption']} (d={r['distance']:.2f})"
                          for r in real if not r["out_of_domain"]],
    }


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return f"{fields.get('Model name', '?').strip()}, {fields.get('CPU(s)', '?').strip()} CPUs"
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"


def markdown(summary: dict, meta: dict) -> str:
    s = summary
    lines = [
        "# Out-of-domain captions: SynthTV test split vs real recordings", "",
        (f"Model `{meta['model']}` (threshold {meta['threshold']:.3f}, the {meta['percentile']:g}th percentile of "
        f"{meta['val_clips']} validation clips; statistics from {meta['train_clips']} training clips). "
        f"CPU: {meta['cpu']}. `{meta['command']}`"), "",
        "| | SynthTV test (seed 1) | real recordings | real footage only |", "|---|---:|---:|---:|",
        f"| scenes | {s['synthtv_clips']} | {s['real_scenes']} | {s['real_footage_scenes']} |",
        (f"| marked out of domain | {s['marked_ood_synthtv']:.1%} | {s['marked_ood_real']:.1%} | "
        f"{s['marked_ood_real_footage_only']:.1%} |"),
        f"| of which blank pictures (tvcaption/blank.py) | {s['blank_synthtv']:.1%} | {s['blank_real']:.1%} | |",
        f"| median domain distance | {s['distance_median_synthtv']:.2f} | {s['distance_median_real']:.2f} | |",
        (f"| median confidence (log p per token) | {s['confidence_median_synthtv']:.3f} | "
        f"{s['confidence_median_real']:.3f} | |"), "",
        (f"AUROC (real vs SynthTV): domain distance **{s['auroc_distance']:.3f}** (footage only "
        f"{s['auroc_distance_footage_only']:.3f}); model confidence **{s['auroc_confidence']:.3f}**."), "",
        (f"Real-scene captions naming a horse: {s['real_captions_with_horse']}, marked out of domain: "
        f"{s['real_horse_captions_marked']}."), "",
        "Searches over the real recordings, stored as `tvcaption index` stores them (caption analyser only):", "",
        "| query | hits | showing a caption with the word | with --all-captions: hits | showing such a caption |",
        "|---|---:|---:|---:|---:|",
    ] + [f"| {x['word']} | {x['default']['hits']} | {x['default']['hits_showing_a_caption_with_the_word']} | "
         f"{x['all_captions']['hits']} | {x['all_captions']['hits_showing_a_caption_with_the_word']} |"
         for x in s["searches"]] + [""]
    if s["real_unmarked"]:
        lines += ["Real scenes not marked:", ""] + [f"- {x}" for x in s["real_unmarked"]] + [""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="checkpoint stem (default: the shipped model)")
    parser.add_argument("--test-data", type=Path, default=REPO / "bench/work/domain/synthtv-test")
    parser.add_argument("--test-clips", type=int, default=300)
    parser.add_argument("--real", type=Path, nargs="*",
                        default=[REPO.parent / "shared/data/scenes", REPO.parent / "shared/data/captioned"])
    parser.add_argument("--out", type=Path, default=REPO / "bench/results")
    args = parser.parse_args()

    import tempfile

    from tvcaption.checkpoint import read_manifest
    from tvcaption.config import load_config, with_overrides
    from tvcaption.db.store import Store, connect
    from tvcaption.resources import shipped_model

    model = Path(args.model) if args.model else shipped_model()
    config = load_config(REPO / "tvcaption.toml")
    config = dataclasses.replace(config, index=dataclasses.replace(config.index, analysers=("caption",)))
    config = with_overrides(config, "model", path=str(model))
    domain = read_manifest(model).meta.get("domain")
    if not domain:
        raise SystemExit(f"{model}: no domain statistics; run tvcaption model calibrate first")
    t0 = time.perf_counter()
    synth = caption_rows(synthtv_test_videos(args.test_data, args.test_clips), config, "synthtv")
    with tempfile.TemporaryDirectory() as tmp:  # the real recordings, stored as index stores them
        store = Store(connect(f"sqlite:///{tmp}/real.db"))
        real = caption_rows(real_videos(args.real), config, "real", store)
        searched = [search_check(store, w) for w in dict.fromkeys(["horse", commonest_noun(real)])]
        store.engine.dispose()
    summary = {**summarise(synth, real), "searches": searched}
    meta = {"model": model.name, "threshold": domain["threshold"], "percentile": domain.get("percentile", 99),
            "val_clips": domain.get("val_clips"), "train_clips": domain.get("train_clips"), "cpu": cpu_name(),
            "seconds": round(time.perf_counter() - t0, 1),
            "command": "python bench/domain.py " + " ".join(sys.argv[1:])}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "domain.json").write_text(json.dumps({"meta": meta, "summary": summary, "synthtv": synth,
                                                      "real": real}, indent=1) + "\n")
    (args.out / "domain.md").write_text(markdown(summary, meta))
    print(markdown(summary, meta))


if __name__ == "__main__":
    main()
