#!/usr/bin/env python
"""Fault trials for ``tvcaption index --ray``: kill Ray workers, and whole nodes, mid-batch.

    .venv/bin/python scripts/ray_faults.py --trials 5                    # worker kills
    .venv/bin/python scripts/ray_faults.py --trials 3 --mode node       # node kills
    .venv/bin/python scripts/ray_faults.py --db-url postgresql+psycopg://me@host/scratch

A cluster of two nodes is started on this machine (``ray start --head`` and a second ``ray
start`` joining it, one CPU each, in a temporary folder of their own), a PostgreSQL server of
its own too unless ``--db-url`` names a scratch database (emptied before every run). One clean
one-process run gives the reference. Each trial then indexes the same folder with ``index --ray``
(two workers, one per node) from an empty database and:

- ``worker``: SIGKILLs ``--kills`` worker processes, each a random moment after it claimed a
  recording and while it still holds the claim; Ray restarts the actor and retries the task. A
  kill counts only if the recording was still the dead worker's once it was gone (one that saved
  just before it died is listed as missed, and another kill follows);
- ``node``: SIGKILLs the second node's raylet and every process under it (its worker with it)
  while that worker holds a claim, then starts a new node that joins the head, as an autoscaler
  would; Ray restarts the actor there once it has seen the node die.

After each trial every recording must be done exactly once with the reference's scenes and
captions (one caption per scene, no duplicate scene, no claim left, search finds each), and the
batch must report no failure, after ``--kills`` kills. Both nodes run on one host, so a dead worker's claim is taken at
once by the pid check; across hosts the driver gives it back (tvcaption/ray_index.py). Exit 0
when every trial passed; ``--json`` writes a summary. Every process started is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "bench"))  # machine.py: what the summary says of the machine
RAY = str(Path(sys.executable).parent / "ray")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a trial cluster on 127.0.0.1: no tokens to hand round


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process we can see."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                out[int(entry.name)] = (ppid, (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except (OSError, IndexError, ValueError):
                continue
    return out


def under(pid: int, table: dict[int, tuple[int, str]]) -> set[int]:
    found, todo = {pid}, [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, _) in table.items():
            if ppid == parent and child not in found:
                found.add(child)
                todo.append(child)
    return found


class Cluster:
    """A head and worker nodes on this machine, all in ``temp`` (so they are ours to stop)."""

    def __init__(self, temp: Path, port: int = 6391) -> None:
        self.temp, self.port, self.nodes = temp, port, 0
        self.address = f"127.0.0.1:{port}"
        self.common = ["--num-cpus=1", "--object-store-memory=100000000", "--disable-usage-stats"]

    def start(self) -> Cluster:
        self._ray("start", "--head", f"--port={self.port}", f"--temp-dir={self.temp}", "--include-dashboard=false",
                  *self.common)
        self.add_node()
        return self

    def _ray(self, *args: str) -> None:
        proc = subprocess.run([RAY, *args], check=False, capture_output=True, text=True, timeout=180)
        if proc.returncode != 0:
            raise SystemExit(f"ray {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")

    def add_node(self) -> None:
        self.nodes += 1
        self._ray("start", f"--address={self.address}", f"--node-manager-port={self.port + 10 + self.nodes}", *self.common)

    def node_raylet(self) -> int | None:
        """The pid of the newest worker node's raylet."""
        flag = f"--node_manager_port={self.port + 10 + self.nodes}"
        return next((pid for pid, (_, cmd) in processes().items() if "raylet" in cmd.split(" ")[0] and flag in cmd), None)

    def kill_node(self) -> int:
        table = processes()
        raylet = self.node_raylet()
        doomed = under(raylet, table) if raylet else set()
        for pid in doomed:
            _kill(pid, signal.SIGKILL)
        return len(doomed)

    def stop(self) -> None:
        """Every process of this cluster (its command lines name our temp folder, or run under one that does)."""
        table = processes()
        ours = {pid for pid, (_, cmd) in table.items() if str(self.temp) in cmd}
        for pid in set().union(*(under(p, table) for p in ours)) if ours else set():
            if pid != os.getpid():
                _kill(pid, signal.SIGKILL)
        shutil.rmtree(self.temp, ignore_errors=True)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def index_in_thread(folder: Path, config_path: Path, url: str, address: str) -> tuple[threading.Thread, dict]:
    from tvcaption.config import load_config
    from tvcaption.ray_index import index_paths_ray

    config = load_config(config_path, env={"TVCAPTION_DATABASE__URL": url})
    out: dict = {}

    def run() -> None:
        try:
            out["report"] = index_paths_ray([folder], config, address=address)
        except BaseException as exc:  # noqa: BLE001 - reported as the trial's problem
            out["error"] = repr(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def kill_during(run: threading.Thread, url: str, rng: random.Random, kills: int, cluster: Cluster | None,
                delay: float = 1.5) -> list[dict]:
    """Kill workers (or the node of one) a random moment (up to ``delay`` s, halved each time the
    worker finished first) after they claimed a recording.

    A kill counts only when it interrupted the claim: the recording was still being indexed by
    the killed worker once that process was gone (a worker that had saved in the meantime was
    killed for nothing: such misses are listed with ``"missed": true`` and another kill follows)."""
    from tvcaption.db.store import Store

    done: list[dict] = []
    killed: set[str] = set()
    started = time.monotonic()
    with Store(url) as store:
        while run.is_alive() and sum(not k.get("missed") for k in done) < kills:
            time.sleep(0.05)
            claims = [(r.path, r.claimed_by) for r in store.recordings(status="processing")
                      if r.claimed_by and r.claimed_by not in killed]  # a dead worker's claim stays until retried
            if cluster is not None:  # only a claim of the worker node's worker
                node = under(cluster.node_raylet() or -1, processes())
                claims = [c for c in claims if int(c[1].split(":")[1]) in node]
            if not claims:
                continue
            time.sleep(rng.uniform(0.0, delay))
            path, holder = rng.choice(claims)
            if not holds(store, path, holder):
                delay /= 2  # it finished the recording meanwhile: choose again, sooner
                continue
            killed.add(holder)
            pid = int(holder.split(":")[1])
            if cluster is None:
                _kill(pid, signal.SIGKILL)
            else:
                cluster.kill_node()
            gone(pid)
            kill = {"at": round(time.monotonic() - started, 2), "recording": Path(path).name}
            done.append(kill if holds(store, path, holder) else {**kill, "missed": True})
            if cluster is not None:
                cluster.add_node()
    return done


def holds(store, path: str, holder: str) -> bool:
    row = store.get_recording(path)
    return row is not None and row.status == "processing" and row.claimed_by == holder


def gone(pid: int, wait: float = 10.0) -> None:
    """Until ``pid`` no longer runs (killed: a zombie counts as gone)."""
    until = time.monotonic() + wait
    while time.monotonic() < until:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state == "Z":
            return
        time.sleep(0.01)


def this_machine() -> dict:
    """What the summary says of the machine: the trials share it with whatever else runs there."""
    import platform

    import ray
    from machine import cpu_model, proc_field

    return {"host": platform.node(), "cpu": cpu_model(), "cores": os.cpu_count(),
            "memory": proc_field("/proc/meminfo", "MemTotal"), "python": platform.python_version(),
            "ray": ray.__version__, "load_average_before": [round(x, 2) for x in os.getloadavg()]}


def trial(args, rng, db, folder, config, reference, words, cluster: Cluster) -> dict:
    from crash_trials import check_final

    url = db.fresh()
    started = time.monotonic()
    run, out = index_in_thread(folder, config, url, cluster.address)
    kills = kill_during(run, url, rng, args.kills, cluster if args.mode == "node" else None, args.delay)
    run.join(timeout=900)
    problems = [] if not run.is_alive() else ["the batch did not end within 900 s"]
    report = out.get("report")
    if "error" in out:
        problems.append(f"the batch raised {out['error']}")
    elif report is not None and report.failed:
        problems += [f"reported failed: {reason}" for _, reason in report.failed]
    hits = [k for k in kills if not k.get("missed")]
    if len(hits) < args.kills:
        problems.append(f"the batch ended after {len(hits)} of {args.kills} kills")
    problems += check_final(url, reference, words, {})
    return {"kills": kills, "seconds": round(time.monotonic() - started, 1), "problems": problems,
            "done": len(report.done) if report else 0, "skipped": len(report.skipped) if report else 0}


def reference_run(db, folder: Path, config_path: Path) -> tuple[dict, list[str], float, float]:
    """What a clean one-process run stores: scenes by recording, words to search for, its seconds
    and the mean seconds of one recording (claim to save, about)."""
    from crash_trials import searchable_words

    from tvcaption.config import load_config
    from tvcaption.db.store import Store
    from tvcaption.pipeline import index_paths

    url = db.fresh()
    started = time.monotonic()
    report = index_paths([folder], load_config(config_path, env={"TVCAPTION_DATABASE__URL": url}))
    if report.failed or not report.done:
        raise SystemExit(f"the clean reference run failed: {report.failed}")
    with Store(url) as store:
        stored = {r.path: store.scenes_of(r.path) for r in store.recordings()}
    reference = {p: [(round(s.start, 4), round(s.end, 4), s.caption) for s in found] for p, found in stored.items()}
    words = sorted({w for found in stored.values() for s in found for w in searchable_words(s)})[:12]
    per_recording = sum(seconds for _, _, seconds in report.done) / len(report.done)
    return reference, words, time.monotonic() - started, per_recording


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--mode", choices=("worker", "node"), default="worker")
    parser.add_argument("--kills", type=int, default=2, help="kills per trial (default 2)")
    parser.add_argument("--recordings", type=int, default=6)
    parser.add_argument("--model", type=Path, help="checkpoint stem (default: train a toy model first)")
    parser.add_argument("--db-url", help="PostgreSQL scratch database (emptied before every run); default: a server of our own")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write a JSON summary here")
    args = parser.parse_args(argv)

    from crash_trials import Database, make_recordings
    from toymodel import build_toy, write_config

    machine = this_machine()
    work = Path(tempfile.mkdtemp(prefix="tvcaption-rayfaults-"))
    rng = random.Random(args.seed)
    server = cluster = None
    try:
        model = args.model or build_toy(work / "toy").model
        folder = work / "recordings"
        make_recordings(folder, args.recordings, rng)
        config = write_config(work / "config", model, "sqlite:///unused.db")
        config.write_text(config.read_text() + '[index]\nanalysers = ["caption", "tags"]\n'
                          "[ray]\nworkers = 2\ncpus_per_worker = 1\nretries = 3\n")
        url = args.db_url
        if not url:
            from pgserver import LocalServer, find_pg_bin

            server = LocalServer(find_pg_bin()).start()  # its own folder: it may run as another user
            url = server.url("postgres")
        db = Database(url, work)
        reference, words, clean, per_recording = reference_run(db, folder, config)
        print(f"{len(reference)} recordings, {sum(map(len, reference.values()))} scenes; clean one-process run "
              f"{clean:.1f}s", flush=True)
        # a kill waits up to one recording's time in the clean run after the claim is seen: longer,
        # and the worker has mostly saved it already (these recordings take 0.2-1 s each)
        args.delay = per_recording
        cluster = Cluster(Path(tempfile.mkdtemp(prefix="rf-", dir="/tmp")))
        cluster.start()
        results = []
        for i in range(args.trials):
            r = trial(args, rng, db, folder, config, reference, words, cluster)
            results.append(r)
            hits = ", ".join(f"{k['recording']} at {k['at']}s{' (missed)' if k.get('missed') else ''}"
                             for k in r["kills"])
            print(f"trial {i + 1}/{args.trials} ({args.mode} kills: {hits}): {r['seconds']}s, "
                  f"{'ok' if not r['problems'] else 'FAILED'}", flush=True)
            for p in r["problems"]:
                print(f"  {p}", flush=True)
    finally:
        if cluster is not None:
            cluster.stop()
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    failed = [r for r in results if r["problems"]]
    summary = {"mode": args.mode, "trials": len(results),
               "kills": sum(not k.get("missed") for r in results for k in r["kills"]),
               "missed_kills": sum(bool(k.get("missed")) for r in results for k in r["kills"]),
               "recordings": len(reference), "clean_seconds": round(clean, 1), "failed_trials": len(failed),
               "kill_delay_max_s": round(args.delay, 2),
               "command": " ".join(["scripts/ray_faults.py", *(argv if argv is not None else sys.argv[1:])]),
               "machine": {**machine, "load_average_after": [round(x, 2) for x in os.getloadavg()]},
               "results": results}
    print(f"{args.mode}: {summary['trials']} trials, {summary['kills']} kills, {len(failed)} failed trial(s)")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
