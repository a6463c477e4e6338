"""The GPU path, run for real: one prepared script for a machine with an NVIDIA GPU.

    python bench/gpu.py                         # on the GPU machine: 60-minute broadcast, SynthTV epoch
    python bench/gpu.py --cpu-dry-run           # here: the same steps at toy sizes on the CPU, to check the script

It records, in bench/results/gpu-<device>.json:

* the machine (GPU name and memory, driver, CUDA as torch sees it, CPU model and extensions);
* ``tvcaption index`` of the benchmark broadcast (bench/broadcast.py, 60 minutes by default) with
  ``[features] device = "cuda"`` (the backbone in fp16 autocast, frames batched by
  ``--batch-size``; decoding on CPU threads): wall time, real-time factor, peak RSS, and GPU
  utilisation and memory sampled by ``nvidia-smi`` every 200 ms while it runs;
* the same with TransNetV2 as the shot detector on the GPU (``[scenes] detector = "transnetv2"``);
* one epoch of ``tvcaption train`` at the paper's sizes (LSTM 1024, 30 frames: the defaults) on
  SynthTV (``--train`` clips generated here, their features cached first, then timed separately):
  seconds per epoch and per step.

Every figure comes from this run on this machine. It needs the repository's environment
(``./setup.sh``) and ``../shared/data`` (for the broadcast) on that machine; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from broadcast import make_broadcast  # noqa: E402
from machine import cpu_features, cpu_model  # noqa: E402
from speed import _index, _timed  # noqa: E402


class GpuSampler:
    """``nvidia-smi`` utilisation and memory every ``period_ms`` in a thread, while a job runs."""

    def __init__(self, period_ms: int = 200) -> None:
        self.period_ms, self.samples, self._proc = period_ms, [], None

    def __enter__(self) -> GpuSampler:
        try:
            self._proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                 f"-lms={self.period_ms}"], stdout=subprocess.PIPE, text=True)
        except FileNotFoundError:
            return self
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        for line in self._proc.stdout:
            parts = [p.strip() for p in line.split(",")]
            if len(parts) == 2 and all(p.replace(".", "").isdigit() for p in parts):
                self.samples.append((float(parts[0]), float(parts[1])))

    def __exit__(self, *exc) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait()

    def summary(self) -> dict:
        if not self.samples:
            return {"samples": 0}
        util = sorted(s[0] for s in self.samples)
        return {"samples": len(util), "util_mean_pct": sum(util) / len(util), "util_p50_pct": util[len(util) // 2],
                "memory_max_mib": max(s[1] for s in self.samples)}


def _machine() -> dict:
    import torch

    out = {"cpu": cpu_model(), "cpu_features": cpu_features(), "cores": os.cpu_count(), "torch": torch.__version__,
           "cuda": torch.version.cuda, "gpu": None}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1))
    return out


def _index_gpu(rec: Path, work: Path, device: str, batch: int, **settings: str) -> dict:
    with GpuSampler() as gpu:
        res = _index(rec, work, TVCAPTION_FEATURES__DEVICE=device, TVCAPTION_FEATURES__BATCH_SIZE=str(batch),
                     **settings)
    return res | {"gpu": gpu.summary()}


def _train_epoch(work: Path, clips: int, device: str, frames: int | None) -> dict:
    data = work / f"synthtv-{clips}"
    if not (data / "videodatainfo.json").exists():
        subprocess.run([sys.executable, "-m", "tvcaption", "synth", str(data), "--train", str(clips), "--val", "16",
                        "--test", "0"], check=True)
    env = dict(os.environ, TVCAPTION_FEATURES__DEVICE=device)
    base = [sys.executable, "-m", "tvcaption", "train", str(data), "--out", str(work / "gpu-epoch"),
            "--val-clips", "16", "--epochs", "1"] + (["--frames", str(frames)] if frames else [])
    t = time.perf_counter()
    subprocess.run(base, env=env, check=True, capture_output=True)  # features cached (and one epoch)
    first = time.perf_counter() - t
    with GpuSampler() as gpu:
        wall, rss, _, _ = _timed(base, env)  # features cached now: the epoch alone (+ start-up, validation)
    return {"clips": clips, "first_run_with_features_s": first, "epoch_s": wall, "peak_rss_mb": rss / 2**20,
            "gpu": gpu.summary()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--train", type=int, default=2000, help="SynthTV training clips for the epoch")
    ap.add_argument("--batch-size", type=int, default=64, help="frames per CNN batch on the GPU")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work")
    ap.add_argument("--cpu-dry-run", action="store_true", help="toy sizes on the CPU: checks the script, measures nothing")
    args = ap.parse_args(argv)
    device = "cpu" if args.cpu_dry_run else "cuda"
    minutes, clips, frames = (0.5, 32, 4) if args.cpu_dry_run else (args.minutes, args.train, None)
    work = args.work if not args.cpu_dry_run else Path(tempfile.mkdtemp(prefix="gpu-dry-"))
    work.mkdir(parents=True, exist_ok=True)
    machine = _machine()
    if device == "cuda" and not machine["gpu"]:
        raise SystemExit("no CUDA device visible to torch: run this on the GPU machine (or --cpu-dry-run)")
    rec = work / f"broadcast-{minutes:g}min.ts"
    if not rec.exists():
        make_broadcast(rec, minutes)
    result = {"machine": machine, "recording": {"file": rec.name, "minutes": minutes}, "dry_run": args.cpu_dry_run}
    result["index"] = _index_gpu(rec, work, device, args.batch_size, TVCAPTION_INDEX__ANALYSERS="caption,tags")
    result["index_transnetv2"] = _index_gpu(rec, work, device, args.batch_size,
                                            TVCAPTION_INDEX__ANALYSERS="caption,tags",
                                            TVCAPTION_SCENES__DETECTOR="transnetv2")
    for key in ("index", "index_transnetv2"):
        result[key]["rtf"] = minutes * 60 / result[key]["wall_s"]
    result["train_epoch"] = _train_epoch(work, clips, device, frames)
    name = "cpu-dry-run" if args.cpu_dry_run else (machine["gpu"] or "gpu").replace(" ", "-").lower()
    out = (ROOT / "bench" / "results" / f"gpu-{name}.json") if not args.cpu_dry_run else work / "gpu-dry-run.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
