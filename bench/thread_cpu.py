#!/usr/bin/env python3
"""Where an index's CPU goes, thread by thread, and how many cores are busy second by second.

    python bench/thread_cpu.py [--minutes 2] [--analysers caption,tags] [--runs 1]
                               [--out bench/results/thread_cpu.json]

Runs ``tvcaption index`` on the benchmark broadcast (bench/broadcast.py) into a fresh SQLite
database, in a child process that samples, every 0.2 s, each of its threads' CPU time (from
/proc/self/task) and, every second, its whole CPU time. Reports, per run: wall time, CPU seconds
per thread (named threads by name; OpenVINO's, FFmpeg's and other native threads as
"native"), and the cores busy in each second of the run. Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

CHILD = r"""
import json, os, sys, threading, time

def thread_cpu():
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = open(f"/proc/self/task/{tid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out

names, seen, busy = {}, {}, []
def watch():
    last_cpu, last_t, next_second = sum(os.times()[:2]), time.monotonic(), time.monotonic() + 1.0
    while True:
        for t in threading.enumerate():
            if t.native_id:
                names[t.native_id] = t.name
        seen.update(thread_cpu())
        time.sleep(0.2)
        if time.monotonic() >= next_second:
            cpu, now = sum(os.times()[:2]), time.monotonic()
            busy.append(round((cpu - last_cpu) / (now - last_t), 2))
            last_cpu, last_t, next_second = cpu, now, now + 1.0

threading.Thread(target=watch, name="bench-watch", daemon=True).start()
start = time.monotonic()

def report():
    seen.update(thread_cpu())
    per = {}
    for tid, cpu in seen.items():
        name = names.get(tid, "native")
        if name == "bench-watch":
            continue
        per[name] = per.get(name, 0.0) + cpu
    json.dump({"wall_s": time.monotonic() - start, "cpu_s": sum(os.times()[:2]),
               "threads_cpu_s": dict(sorted(per.items(), key=lambda kv: -kv[1])), "cores_busy": busy},
              open(os.environ["BENCH_THREAD_CPU_OUT"], "w"))

import atexit
atexit.register(report)
sys.argv = ["tvcaption"] + sys.argv[1:]
from tvcaption.cli import app
app()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--analysers", default="caption,tags")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "thread_cpu.json"))
    args = parser.parse_args()

    from broadcast import make_broadcast
    from machine import cpu_features, cpu_model

    runs = []
    with tempfile.TemporaryDirectory(prefix="tvcaption-threads-") as tmp:
        work = Path(tmp)
        rec = work / f"broadcast-{args.minutes:g}min.ts"
        make_broadcast(rec, args.minutes)
        for i in range(args.runs):
            out = work / f"run{i}.json"
            env = {**os.environ, "BENCH_THREAD_CPU_OUT": str(out), "TVCAPTION_INDEX__ANALYSERS": args.analysers}
            load = os.getloadavg()[0]
            subprocess.run([sys.executable, "-c", CHILD, "index", str(rec), "--db", str(work / f"run{i}.db")],
                           env=env, check=True, capture_output=True, cwd=work)
            run = json.loads(out.read_text())
            run["load_before"] = round(load, 2)
            runs.append(run)
            print(f"run {i + 1}: {run['wall_s']:.1f} s wall, {run['cpu_s']:.1f} s CPU; "
                  + ", ".join(f"{k} {v:.1f}" for k, v in run["threads_cpu_s"].items()), flush=True)
            print(f"  cores busy each second: {run['cores_busy']}", flush=True)
    result = {"machine": {"cpu": cpu_model(), "cpu_features": cpu_features(), "cores": os.cpu_count()},
              "recording_minutes": args.minutes, "analysers": args.analysers, "runs": runs,
              "when": time.strftime("%Y-%m-%d %H:%M")}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
