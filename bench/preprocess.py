#!/usr/bin/env python3
"""What resizing frames for the CNN on uint8 pixels (the CPU default since issue 17's OpenVINO
work) gains and costs against resizing them in float (what the shipped model was trained on).

    python bench/preprocess.py [--clips 200] [--out bench/results/preprocess.json]

One run, on the machine at hand, the backbone in OpenVINO with one thread:

- ms per SD frame (720x576 -> 224x224, antialiased bilinear) of either resize, medians of
  alternated runs, and of resize + normalise + trunk;
- ImageNet tags of 8 frames of every real clip in ../shared/data/scenes and captioned/msvd:
  top-1 agreement, top-5 overlap, and the features' differences (bench/int8.py's measures);
- the shipped model's captions on a fresh SynthTV test split (seed 1, ``--clips`` clips): the
  share identical to the float path's and the slot accuracy of each.
"""

from __future__ import annotations

import argparse
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


class FloatResize:
    """The same backbone with frames handed over as float: Backbone.preprocess then resizes in
    float, as it did before (and still does on CUDA)."""

    def __init__(self, backbone) -> None:
        self.backbone = backbone
        self.grid, self.channels, self.device = backbone.grid, backbone.channels, backbone.device

    def __call__(self, frames):
        return self.backbone(torch.as_tensor(np.asarray(frames)).float())

    def preprocess(self, frames):
        return self.backbone.preprocess(torch.as_tensor(np.asarray(frames)).float())

    def classify(self, local):
        return self.backbone.classify(local)


def timing(backbone, frames: np.ndarray, reps: int) -> dict:
    """ms a frame: each resize alone, and resize + trunk, the two paths alternated."""
    paths = {"uint8": backbone, "float": FloatResize(backbone)}
    times: dict[str, list[float]] = {f"{k}_{what}": [] for k in paths for what in ("preprocess", "with_trunk")}
    for _ in range(reps):
        for name, b in paths.items():
            t = time.perf_counter()
            b.preprocess(frames)
            times[f"{name}_preprocess"].append(time.perf_counter() - t)
            t = time.perf_counter()
            b(frames)
            times[f"{name}_with_trunk"].append(time.perf_counter() - t)
    return {k: round(1e3 * statistics.median(v) / len(frames), 2) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=200, help="SynthTV test clips (seed 1)")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "preprocess.json"))
    args = parser.parse_args()

    from int8 import real_frames, slot_accuracy, tag_agreement
    from machine import cpu_features, cpu_model
    from tvcaption.config import FeaturesConfig
    from tvcaption.features.onnx_backbone import load_onnx_backbone

    torch.set_num_threads(1)
    backbone = load_onnx_backbone(FeaturesConfig(device="cpu", threads=1), "openvino")
    names, frames = real_frames()
    # SD frames (720x576, a PAL broadcast's) made from the first real clip's
    sd = torch.nn.functional.interpolate(torch.from_numpy(frames[0][:8]).permute(0, 3, 1, 2), size=(576, 720),
                                         mode="bilinear", antialias=True).permute(0, 2, 3, 1).contiguous().numpy()
    result = {
        "machine": {"cpu": cpu_model(), "cpu_features": cpu_features(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "torch": torch.__version__},
        "speed_ms_per_frame": timing(backbone, sd, args.reps),
        "tags": {"clips": names},
    }
    print("speed", result["speed_ms_per_frame"], flush=True)
    result["tags"]["uint8_vs_float"] = tag_agreement(FloatResize(backbone), backbone, frames)
    print("tags", result["tags"]["uint8_vs_float"], flush=True)
    work = Path(tempfile.mkdtemp(prefix="preprocess-bench-"))
    try:
        result["synthtv"] = slot_accuracy({"fp32": FloatResize(backbone), "uint8": backbone}, args.clips, work)
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    print("synthtv", json.dumps(result["synthtv"]), flush=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
