#!/usr/bin/env python3
"""How many frames a backbone run should take on CPU (issue 17): ms a frame for runs of 1, 2, 4
and 8 frames, in ONNX Runtime and in OpenVINO (compiled for that batch, and for the exported
graph's dynamic batch), one inference thread, the cached export of the default backbone.

    python bench/run_frames.py [--reps 5] [--out bench/results/run_frames.json]

Each configuration runs 10 frames (a scene's worth) ``--reps`` times after a warm-up; the runs
of every configuration alternate, and the medians are reported, in ms per frame put through the
network (a static batch of 4 or 8 pads the scene's 10 frames to 12 or 16: those count too).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SIZES = (1, 2, 4, 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "run_frames.json"))
    args = parser.parse_args()

    import onnxruntime
    import openvino

    from machine import cpu_features, cpu_model
    from tvcaption.config import FeaturesConfig
    from tvcaption.features.onnx_backbone import _cached_entry

    config = FeaturesConfig(device="cpu", threads=1)
    path = _cached_entry(config) / "trunk.onnx"
    x = np.random.default_rng(0).standard_normal((10, 3, 224, 224)).astype(np.float32)
    options = onnxruntime.SessionOptions()  # as onnx_backbone._ort_runner, which runs one frame at a time
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_cpu_mem_arena = False
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    ort_input = session.get_inputs()[0].name

    def ort_run(a: np.ndarray) -> np.ndarray:
        return session.run(None, {ort_input: a})[0]

    core = openvino.Core()
    properties = {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
                  "ENABLE_CPU_PINNING": False}

    def ov_request(batch: int | None):
        model = core.read_model(str(path))
        if batch:
            model.reshape([batch, 3, 224, 224])
        compiled = core.compile_model(model, "CPU", properties)
        return compiled.create_infer_request()

    def chunks(run, k):
        return lambda: [run(x[i:i + k]) for i in range(0, len(x), k)]

    configs, frames_run = {}, {}
    for k in SIZES:
        configs[f"onnxruntime_{k}"] = chunks(ort_run, k)
        static = ov_request(k)
        # a static shape takes exactly k frames: 10 frames in runs of k, the last one padded
        padded = np.concatenate([x, np.zeros((-len(x) % k, *x.shape[1:]), np.float32)])
        configs[f"openvino_static_{k}"] = (lambda r, k, p: lambda: [r.infer({0: p[i:i + k]})
                                                                    for i in range(0, len(p), k)])(static, k, padded)
        frames_run[f"openvino_static_{k}"] = len(padded)
        dynamic = ov_request(None)
        configs[f"openvino_dynamic_{k}"] = chunks(lambda a, r=dynamic: r.infer({0: a}), k)
    times: dict[str, list[float]] = {name: [] for name in configs}
    for fn in configs.values():
        fn()  # warm-up
    for _ in range(args.reps):
        for name, fn in configs.items():
            t = time.perf_counter()
            fn()
            times[name].append(1e3 * (time.perf_counter() - t) / frames_run.get(name, len(x)))
    result = {"machine": {"cpu": cpu_model(), "cpu_features": cpu_features(), "cores": os.cpu_count(),
                          "onnxruntime": onnxruntime.__version__, "openvino": openvino.__version__},
              "threads": 1, "frames": len(x), "reps": args.reps,
              "ms_per_frame": {name: round(statistics.median(v), 2) for name, v in times.items()}}
    print(json.dumps(result["ms_per_frame"], indent=1))
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
