"""What ``index --ray`` costs over one process: the same folder both ways on this machine.

    python bench/ray_overhead.py                        # 12 recordings, the shipped model, caption + tags
    python bench/ray_overhead.py --recordings 20 --model path/to/stem

Both runs write to a PostgreSQL server of our own (scripts/pgserver.py), from an empty database:

* one process: ``index_paths`` as ``tvcaption index`` runs it (model load included);
* Ray: a local cluster with 2 workers of 1 core each (``index_paths_ray``).

The figure asked for is the overhead per recording: of the time the workers were up (from the
first recording a worker starts to the end of the batch, times the workers), what was not spent
indexing a recording (the worker's own time from claim to saved result), per recording. That is
dispatch, results and progress through Ray, and workers idle at the end of the batch. Start-up
(``ray.init``, the workers loading the model) is reported on its own, as are the per-recording
indexing times both ways (two 1-core workers against one 2-thread process). ``lscpu`` is saved
with the results in bench/results/ray_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
RESULTS = HERE / "results" / "ray_overhead.json"
WORKERS = 2


def write_config(folder: Path, model: Path | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tvcaption.toml"
    path.write_text('[features]\ndevice = "cpu"\n' + (f'[model]\npath = "{model}"\n' if model else "")
                    + '[index]\nanalysers = ["caption", "tags"]\n'
                    f"[ray]\nworkers = {WORKERS}\ncpus_per_worker = 1\n")
    return path


def one_process(folder: Path, config) -> dict:
    from tvcaption.pipeline import index_paths

    started = time.perf_counter()
    report = index_paths([folder], config)
    return {"wall_s": round(time.perf_counter() - started, 2), "done": len(report.done),
            "per_recording_s": [round(s, 3) for _, _, s in report.done], "failed": len(report.failed),
            "recording_s": round(report.recording_seconds, 2)}


def with_ray(folder: Path, config) -> dict:
    import ray

    from tvcaption.ray_index import index_paths_ray

    started = time.perf_counter()
    ray.init(address="local", num_cpus=WORKERS, object_store_memory=100 * 1024 * 1024, include_dashboard=False,
             logging_level="warning", log_to_driver=False)
    up = time.perf_counter()
    first: list[float] = []

    def seen(event) -> None:
        if event.kind == "file" and not first:
            first.append(time.perf_counter())

    try:
        report = index_paths_ray([folder], config, on_event=seen)
    finally:
        ray.shutdown()
    ended = started + (up - started) + report.wall_seconds
    seconds = [s for _, _, s in report.done]
    window = ended - first[0]
    return {"wall_s": round(ended - started, 2), "ray_init_s": round(up - started, 2),
            "first_recording_started_s": round(first[0] - started, 2), "done": len(report.done),
            "failed": len(report.failed), "per_recording_s": [round(s, 3) for s in seconds],
            "workers_up_s": round(window, 2),
            "overhead_per_recording_s": round((WORKERS * window - sum(seconds)) / max(len(seconds), 1), 3)}


def lscpu() -> str:
    try:
        return subprocess.run(["lscpu"], check=False, capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recordings", type=int, default=12)
    parser.add_argument("--model", type=Path, help="checkpoint stem (default: the shipped model)")
    parser.add_argument("--runs", type=int, default=2, help="alternating runs of each; the fastest counts")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    from crash_trials import Database, make_recordings
    from pgserver import LocalServer, find_pg_bin

    from tvcaption.config import load_config

    work = Path(tempfile.mkdtemp(prefix="tvcaption-raybench-"))
    folder = work / "recordings"
    make_recordings(folder, args.recordings, random.Random(0))
    server = LocalServer(find_pg_bin()).start()  # its own folder: it may run as another user
    try:
        db = Database(server.url("postgres"), work)
        config_path = write_config(work / "cfg", args.model)
        singles, rays = [], []
        for run in range(args.runs):  # alternating: the machine is shared, its load changes
            load = os.getloadavg()[0]
            singles.append({**one_process(folder, load_config(config_path, env={"TVCAPTION_DATABASE__URL": db.fresh()})),
                            "load_before": round(load, 2)})
            print(f"run {run + 1}: one process: {singles[-1]['wall_s']} s for {singles[-1]['done']} recordings "
                  f"(load {load:.1f})", flush=True)
            load = os.getloadavg()[0]
            rays.append({**with_ray(folder, load_config(config_path, env={"TVCAPTION_DATABASE__URL": db.fresh()})),
                         "load_before": round(load, 2)})
            r = rays[-1]
            print(f"run {run + 1}: ray, {WORKERS} workers: {r['wall_s']} s (init {r['ray_init_s']} s, first recording "
                  f"at {r['first_recording_started_s']} s); overhead per recording {r['overhead_per_recording_s']} s "
                  f"(load {load:.1f})", flush=True)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    single, distributed = min(singles, key=lambda r: r["wall_s"]), min(rays, key=lambda r: r["wall_s"])
    import ray

    result = {"recordings": args.recordings, "model": str(args.model or "shipped"), "analysers": "caption,tags",
              "one_process": single, "ray": {"workers": WORKERS, "cpus_per_worker": 1, "version": ray.__version__,
                                             **distributed},
              "all_runs": {"one_process": singles, "ray": rays}, "target_overhead_per_recording_s": 0.5, "cores": os.cpu_count(), "lscpu": lscpu(),
              "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"written to {args.out}")
    return 0 if not any(r["failed"] for r in singles + rays) else 1


if __name__ == "__main__":
    sys.exit(main())
