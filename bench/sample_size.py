#!/usr/bin/env python3
"""Sampled frames at the size they were coded against display-shaped ones, for a run whose
analysers read only the CNN's features (caption + tags): what it saves and what it changes.

    python bench/sample_size.py [--minutes 2] [--msvd 6] [--out bench/results/sample_size.json]

Only pictures whose pixels are not square differ (SD broadcasts: PAL 4:3 is 16:15, PAL 16:9
64:45): the display-shaped path stretches them with swscale to 768 or 1024 pixels, then the CNN
squashes every frame to 224x224; the coded path skips the stretch. One run, on the machine at
hand, with the default inference backbone:

- ms a sampled frame, picture to the CNN's input (conversion to RGB + the resize and normalise
  of ``Backbone.preprocess``), the two paths alternated, median of ``--reps``;
- for every scene of each recording (the single pass of ``tvcaption.stream``, 10 frames a
  scene): the top ImageNet tag (the tags analyser's mean over the scene's frames) and the
  shipped model's caption from either path's features, the share that agree, and the
  features' mean relative difference.

Recordings: a broadcast made by ``bench/broadcast.py`` (PAL 4:3, 16:15), the same re-encoded as
anamorphic 16:9 (64:45), ``issue-195-aspect-ratio.mp4`` (16:11), and MSVD clips (human-captioned
real footage) re-encoded as anamorphic PAL.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
SHARED = ROOT.parent / "shared" / "data"


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def _anamorphic(src: Path, out: Path) -> Path:
    """``src`` re-encoded as a 16:9 PAL broadcast picture: 720x576 MPEG-2 with SAR 64:45."""
    _ffmpeg("-i", str(src), "-vf", "scale=720:576,setsar=64/45,fps=25", "-c:v", "mpeg2video", "-q:v", "3",
            "-an", "-f", "mpegts", str(out))
    return out


def recordings(work: Path, minutes: float, msvd: int) -> list[Path]:
    broadcast = work / "broadcast.ts"
    subprocess.run([sys.executable, str(ROOT / "bench" / "broadcast.py"), str(broadcast), "--minutes", str(minutes)],
                   check=True, stdout=subprocess.DEVNULL)
    files = [broadcast, _anamorphic(broadcast, work / "broadcast-16x9.ts"),
             SHARED / "scenes" / "issue-195-aspect-ratio.mp4"]
    clips = sorted((SHARED / "captioned" / "msvd").glob("*.avi"))[:msvd]
    return files + [_anamorphic(c, work / f"{c.stem}-pal16x9.ts") for c in clips]


def sampled(info, config, display: bool):
    """The pass's scenes with their 10 frames as coded, or display-shaped (as ``shown`` pictures)."""
    import dataclasses

    from tvcaption.stream import StreamStats, stream_scenes

    stats = StreamStats()
    scenes = list(stream_scenes(info, config.scenes, 10, stats=stats, shown=10 if display else 0))
    if display:
        scenes = [dataclasses.replace(s, frames=s.shown, shown=None) for s in scenes]
    return scenes, stats


def speed(info, backbone, reps: int) -> dict:
    """ms a frame from decoded picture to CNN input, both paths, on 40 pictures spread over the file."""
    from tvcaption.video import output_size
    from tvcaption.video.pyav import PyavCursor, converter

    with PyavCursor(info) as cursor:
        pictures = [p for i, (_, p) in enumerate(cursor.frames()) if i % 25 == 0][:40]
    size = (pictures[0].width, pictures[0].height)
    paths = {"display": converter(info, *output_size(info, None)), "coded": converter(info, *size)}
    runs: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(reps):
        for name, convert in paths.items():
            t = time.perf_counter()
            backbone.preprocess(np.stack([convert(p) for p in pictures]))
            runs[name].append(1e3 * (time.perf_counter() - t) / len(pictures))
    out = {k: round(statistics.median(v), 3) for k, v in runs.items()}
    out["saved_ms"] = round(out["display"] - out["coded"], 3)
    return out


def compare(info, engine) -> dict:
    """Tags and captions of every scene from either path's features."""
    import torch

    a, _ = sampled(info, engine.config, True)
    b, _ = sampled(info, engine.config, False)
    assert [s.scene for s in a] == [s.scene for s in b]
    fa = [engine.features(s.frames) for s in a]
    fb = [engine.features(s.frames) for s in b]
    caption = next(x for x in engine.analysers if x.name == "caption")

    def tops(feats):
        return [int(engine.backbone.classify(f).softmax(-1).mean(0).argmax()) for f in feats]

    def captions(scenes, feats):
        inputs = [engine._input(s.scene, s.times, s.frames, f) for s, f in zip(scenes, feats)]
        return [ann[0].text for ann in caption.analyse(inputs)]

    ref, got = torch.cat(fa), torch.cat(fb)
    same_tag = [x == y for x, y in zip(tops(fa), tops(fb))]
    same_caption = [x == y for x, y in zip(captions(a, fa), captions(b, fb))]
    return {"scenes": len(a), "frames": int(ref.shape[0]), "display_size": list(a[0].frames.shape[1:3][::-1]),
            "coded_size": list(b[0].frames.shape[1:3][::-1]),
            "top_tag_same": round(float(np.mean(same_tag)), 4), "caption_same": round(float(np.mean(same_caption)), 4),
            "feature_mean_rel_diff": round(float((got - ref).abs().mean() / ref.abs().mean()), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=2.0, help="length of the made broadcast")
    parser.add_argument("--msvd", type=int, default=6, help="MSVD clips re-encoded as anamorphic PAL")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "sample_size.json"))
    args = parser.parse_args()

    from machine import cpu_features, cpu_model
    from tvcaption.config import Config, with_overrides
    from tvcaption.engine import Engine
    from tvcaption.video import probe

    config = with_overrides(Config(), "index", analysers=["caption", "tags"])
    engine = Engine(config, background=False)
    result: dict = {"machine": {"cpu": cpu_model(), "cpu_features": cpu_features(), "cores": os.cpu_count(),
                                "python": platform.python_version(),
                                "runtime": getattr(engine.backbone, "runtime", "torch")},
                    "recordings": {}}
    with tempfile.TemporaryDirectory(prefix="sample-size-") as tmp:
        for path in recordings(Path(tmp), args.minutes, args.msvd):
            info = probe(path)
            row = {"sample_aspect_ratio": round(info.sample_aspect_ratio, 4), **compare(info, engine)}
            if path.name.startswith("broadcast"):
                row["ms_per_frame"] = speed(info, engine.backbone, args.reps)
            result["recordings"][path.name] = row
            print(path.name, json.dumps(row), flush=True)
    rows = list(result["recordings"].values())
    scenes = sum(r["scenes"] for r in rows)
    result["all"] = {"scenes": scenes,
                     "top_tag_same": round(sum(r["top_tag_same"] * r["scenes"] for r in rows) / scenes, 4),
                     "caption_same": round(sum(r["caption_same"] * r["scenes"] for r in rows) / scenes, 4)}
    print("all", json.dumps(result["all"]))
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
