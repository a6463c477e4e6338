"""Can ``tvcaption index`` (caption + tags) match PySceneDetect's CLI on this machine at all?

    python bench/parity_floor.py [--minutes 10] [--frames 10 5] [--out FILE]

The speed target is ``tvcaption index`` with captions and tags no slower than the CLI detecting
scenes alone. On a machine with C cores, an index run that ends within the CLI's wall time W can
use at most C x W CPU seconds. This script measures, in one run on the benchmark broadcast
(bench/broadcast.py), the CPU seconds of the work an index run cannot skip, each part alone in one
fresh process, each in its cheapest configuration:

* start-up: importing tvcaption and loading the models (OpenVINO backbone, caption model);
* the decoding pass: decode + scene detection + converting each scene's sampled frames (one pass,
  ``tvcaption.stream``, coded size as caption + tags get them), for each frames-a-scene count;
* the CNN: CPU seconds a frame with OpenVINO on one stream and one thread (the least CPU a frame:
  no thread waits for another), on the real sampled frames of the first scenes, times every
  frame the recording needs;
* the caption (beam search) and the tags: CPU seconds a scene, on those scenes' features.

Their sum is a floor: the database, Python's hand-overs between threads and every idle moment
are left out. If the floor exceeds C x W, no scheduling of this work reaches parity here. A
second bound: the decoding pass runs in one thread (with FFmpeg's decoding threads under it),
so a run also lasts at least that pass's wall time. Both are reported against the CLI's wall
time, measured in the same run, with the CPU model and its vector extensions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from broadcast import make_broadcast  # noqa: E402
from machine import cpu_features, cpu_model  # noqa: E402
from speed import _peer  # noqa: E402


def _cpu() -> float:
    return time.process_time()  # user + system CPU of every thread of this process


def _parts(recording: Path, frames_counts: list[int], sample_scenes: int) -> dict:
    """Each part's CPU seconds (and wall), measured in this process one after another."""
    import dataclasses

    import numpy as np

    out: dict = {}
    wall, cpu = time.perf_counter(), _cpu()
    from tvcaption.config import load_config
    from tvcaption.engine import Engine
    from tvcaption.stream import StreamStats, stream_scenes
    from tvcaption.video import probe

    config = load_config(ROOT / "tvcaption.toml")
    config = dataclasses.replace(
        config, index=dataclasses.replace(config.index, analysers=("caption", "tags")),
        features=dataclasses.replace(config.features, runtime="openvino", streams=1, threads=1))
    engine = Engine(config, background=False)
    out["startup"] = {"cpu_s": _cpu() - cpu, "wall_s": time.perf_counter() - wall}
    info = probe(recording)
    out["duration_s"] = info.duration

    kept: dict[int, list] = {}
    for frames in frames_counts:
        stats = StreamStats()
        wall, cpu = time.perf_counter(), _cpu()
        first = []
        for item in stream_scenes(info, config.scenes, frames, stats=stats):
            if len(first) < sample_scenes:
                first.append(item)
        out[f"pass_{frames}"] = {"cpu_s": _cpu() - cpu, "wall_s": time.perf_counter() - wall,
                                 "scenes": stats.scenes, "frames_decoded": stats.frames,
                                 "parts_s": {"decode": stats.decode_s, "detect": stats.detect_s,
                                             "sample": stats.sample_s}}
        kept[frames] = first
        print(f"  pass, {frames} frames a scene: {out[f'pass_{frames}']['cpu_s']:.1f} CPU s", flush=True)

    for frames, scenes in kept.items():
        flat = np.concatenate([s.frames for s in scenes])
        engine.features(flat[:frames])  # warm up
        cpu = _cpu()
        local = engine.features(flat)
        cnn = (_cpu() - cpu) / len(flat)
        inputs = [engine._input(s.scene, s.times, s.frames, x) for s, x in zip(scenes, local.split(frames))]
        engine.analyse(inputs[:2])  # warm up
        cpu = _cpu()
        engine.analyse(inputs)
        analyse = (_cpu() - cpu) / len(inputs)
        out[f"cnn_{frames}"] = {"cpu_ms_per_frame": 1e3 * cnn, "frames": len(flat)}
        out[f"analyse_{frames}"] = {"cpu_ms_per_scene": 1e3 * analyse, "scenes": len(inputs)}
        print(f"  {frames} frames: CNN {1e3 * cnn:.1f} CPU ms a frame, caption + tags {1e3 * analyse:.1f} a scene",
              flush=True)
    return out


def floor(parts: dict, peer: dict, frames: int, cores: int) -> dict:
    """The CPU floor of an index run at ``frames`` a scene against the CLI's budget on ``cores``."""
    run = parts[f"pass_{frames}"]
    scenes = run["scenes"]
    cnn = scenes * frames * parts[f"cnn_{frames}"]["cpu_ms_per_frame"] / 1e3
    analyse = scenes * parts[f"analyse_{frames}"]["cpu_ms_per_scene"] / 1e3
    total = parts["startup"]["cpu_s"] + run["cpu_s"] + cnn + analyse
    budget = cores * peer["wall_s"]
    return {"startup_cpu_s": parts["startup"]["cpu_s"], "pass_cpu_s": run["cpu_s"], "cnn_cpu_s": cnn,
            "caption_tags_cpu_s": analyse, "floor_cpu_s": total, "budget_cpu_s": budget,
            "floor_vs_budget": total / budget,
            "best_wall_s": max(total / cores, run["wall_s"]),
            "best_wall_vs_cli": max(total / cores, run["wall_s"]) / peer["wall_s"],
            "pass_wall_vs_cli": run["wall_s"] / peer["wall_s"]}


def table(result: dict) -> str:
    peer = result["peer"]
    rows = [f"CPU: {result['machine']['cpu']} ({result['machine']['cores']} cores; "
            f"{', '.join(result['machine']['cpu_features'])})",
            f"PySceneDetect CLI: {peer['wall_s']:.1f} s wall, {peer['cpu_s']:.1f} CPU s; budget "
            f"{result['machine']['cores']} x {peer['wall_s']:.1f} s",
            "", "| frames a scene | start-up | decoding pass | CNN | caption + tags | floor | budget | "
            "floor / budget | best wall / CLI |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for frames, f in sorted(result["floors"].items(), key=lambda kv: -int(kv[0])):
        rows.append(f"| {frames} | {f['startup_cpu_s']:.1f} | {f['pass_cpu_s']:.1f} | {f['cnn_cpu_s']:.1f} | "
                    f"{f['caption_tags_cpu_s']:.1f} | {f['floor_cpu_s']:.1f} | {f['budget_cpu_s']:.1f} | "
                    f"{f['floor_vs_budget']:.2f} | {f['best_wall_vs_cli']:.2f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the benchmark recording")
    ap.add_argument("--frames", type=int, nargs="+", default=[10, 5], help="frames a scene to price")
    ap.add_argument("--sample-scenes", type=int, default=24, help="scenes whose frames price the CNN and caption")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "parity_floor.json")
    ap.add_argument("--table", action="store_true", help="only print the table of an existing --out file")
    ap.add_argument("--part", type=Path, help=argparse.SUPPRESS)  # the measuring child process
    args = ap.parse_args(argv)
    if args.part:
        print(json.dumps(_parts(args.part, args.frames, args.sample_scenes)))
        return 0
    if args.table:
        print(table(json.loads(args.out.read_text())))
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    rec = args.work / f"broadcast-{args.minutes:g}min.ts"
    if not rec.exists():
        print(f"making {rec} ...", flush=True)
        make_broadcast(rec, args.minutes)
    cores = len(os.sched_getaffinity(0))
    result: dict = {"machine": {"cpu": cpu_model(), "cores": cores, "cpu_features": cpu_features()},
                    "recording": rec.name}
    print("peer: scenedetect CLI ...", flush=True)
    result["peer"] = {k: v for k, v in _peer(rec, args.work).items() if k != "starts"}
    print("parts, each alone ...", flush=True)
    child = subprocess.run([sys.executable, __file__, "--part", str(rec), "--frames", *map(str, args.frames),
                            "--sample-scenes", str(args.sample_scenes)], capture_output=True, text=True)
    if child.returncode:
        raise SystemExit(child.stderr[-3000:])
    *progress, last = child.stdout.strip().splitlines()
    print("\n".join(progress))
    result["parts"] = json.loads(last)
    result["floors"] = {str(f): floor(result["parts"], result["peer"], f, cores) for f in args.frames}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
