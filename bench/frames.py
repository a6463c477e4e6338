#!/usr/bin/env python3
"""Frames per scene: what fewer cost in caption quality and save in CNN time (issue 17).

    python bench/frames.py [--frames 10,6,5,4,3] [--clips 200] [--model synthtv-lstap]
                           [--out bench/results/frames.json]

The caption model sees ``[model] frames`` frames of each scene (the checkpoint's own number by
default); every one goes through the CNN, which is most of indexing's CPU time. For each count,
on a fresh SynthTV test split (seed 1, ``--clips`` clips) and the machine at hand: the model's
slot accuracy (bench/int8.py's scoring), the share of captions equal to those at the
checkpoint's own count, and the CPU time a scene costs (frames through the backbone in
OpenVINO with one thread, then the L-STAP encoder and beam search), medians over the clips.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", default="10,6,5,4,3")
    parser.add_argument("--clips", type=int, default=200, help="SynthTV test clips (seed 1)")
    parser.add_argument("--model", default="", help="checkpoint stem (default: the shipped model)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "frames.json"))
    args = parser.parse_args()

    from machine import cpu_features, cpu_model
    from tvcaption.analysers import AnalyserContext, SceneInput
    from tvcaption.analysers.caption import CaptionAnalyser
    from tvcaption.clips import split_clips
    from tvcaption.config import Config, FeaturesConfig
    from tvcaption.data import generate_synthtv, read_dataset
    from tvcaption.features import extract
    from tvcaption.features.cache import read_clip
    from tvcaption.features.onnx_backbone import load_onnx_backbone
    from tvcaption.scene import Scene
    from tvcaption.slots import score_slots, slot_subsets

    torch.set_num_threads(1)
    backbone = load_onnx_backbone(FeaturesConfig(device="cpu", threads=1), "openvino")
    work = Path(tempfile.mkdtemp(prefix="frames-bench-"))
    try:
        clips = split_clips(read_dataset(generate_synthtv(work / "synth", train=0, val=0, test=args.clips, seed=1)),
                            "test")
        subsets = slot_subsets(clips)
        result: dict = {"machine": {"cpu": cpu_model(), "cpu_features": cpu_features(), "cores": os.cpu_count(),
                                    "python": platform.python_version(), "torch": torch.__version__},
                        "clips": len(clips), "counts": {}}
        base = Config()
        if args.model:
            base = dataclasses.replace(base, model=dataclasses.replace(base.model, path=args.model))
        reference: dict[str, str] | None = None
        for count in [int(c) for c in args.frames.split(",")]:
            config = dataclasses.replace(base, model=dataclasses.replace(base.model, frames=count))
            captioner = CaptionAnalyser(AnalyserContext(config))
            captions, cnn_s, model_s = {}, [], []
            for clip in clips:
                frames = read_clip(str(clip.video), count)
                t = time.perf_counter()
                features = extract(backbone, frames, batch_size=count)
                cnn_s.append(time.perf_counter() - t)
                t = time.perf_counter()
                (annotations,) = captioner.analyse([SceneInput(Scene(0.0, 1.0, 0, 25), np.zeros(count),
                                                               features=features)])
                model_s.append(time.perf_counter() - t)
                captions[clip.id] = annotations[0].text
            if reference is None:
                reference = captions
            scores = score_slots(captions, clips, subsets)[0]
            row = {"cnn_ms_per_scene": round(1e3 * statistics.median(cnn_s), 1),
                   "caption_ms_per_scene": round(1e3 * statistics.median(model_s), 1),
                   "same_caption_as_first": round(float(np.mean([reference[c.id] == captions[c.id] for c in clips])), 4),
                   "slots": {sub: {k: round(v, 4) for k, v in acc.items()} for sub, acc in scores.items()
                             if sub in ("all", "single")}}
            result["counts"][str(count)] = row
            print(count, json.dumps(row), flush=True)
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
