"""Is one revision slower than another at ``tvcaption index``? Runs both, alternating, on one
benchmark recording, and reports the median wall time of each and their ratio.

    python bench/compare_revisions.py fd0ce59 HEAD            # 5 runs each, 1-minute recording
    python bench/compare_revisions.py v1 v2 --runs 7 --minutes 2
    python bench/compare_revisions.py v1 v2 --first-frame --existing-db   # start-up instead

``--first-frame`` times each run from process start to the first decoded frame (bench/speed.py's
harness) instead of the whole run; ``--existing-db``: into a copy of a database that revision
already migrated (an archive's), not a new file.

Each revision is checked out into a temporary git worktree and run with this interpreter (its
dependencies must suit both); each run indexes the same recording (720x576 25 fps MPEG-2 in
MPEG-TS, from bench/broadcast.py) into a fresh SQLite database with that revision's
tvcaption.toml. Runs alternate A, B, A, B ... after one untimed warm-up of each, so that a
change in the machine's load falls on both. On a shared machine single runs differ by 10% or
more: compare the medians, and look at the spread before calling a difference real.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from broadcast import make_broadcast  # noqa: E402
from machine import cpu_model, proc_field  # noqa: E402


def _worktree(rev: str, where: Path) -> Path:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--force", str(where), rev],
                   check=True, capture_output=True)
    # the packaged model and migrations (tvcaption.resources.*, mapped from models/ and migrations/
    # by pyproject's package-dir) must come from this revision, not from the editable install of
    # the working tree: real folders in the package, found first on PYTHONPATH
    resources = where / "tvcaption" / "resources"
    if resources.is_dir():
        for name in ("models", "migrations"):
            if not (resources / name).exists():
                (resources / name).symlink_to(where / name, target_is_directory=True)
    return where


def _index_once(tree: Path, recording: Path, db: Path, analysers: str | None = None) -> float:
    db.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "tvcaption", "index", str(recording),
           "-c", str(tree / "tvcaption.toml"), "--db", f"sqlite:///{db}"]
    env = {"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", "HOME": str(db.parent)}
    if analysers:
        env["TVCAPTION_INDEX__ANALYSERS"] = analysers
    t = time.perf_counter()
    res = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if res.returncode:
        raise SystemExit(f"{tree.name}: index exited {res.returncode}: {res.stderr[-1500:]}")
    return wall


def _first_frame_once(tree: Path, recording: Path, db: Path, analysers: str | None, template: Path | None) -> float:
    """Seconds from just before the spawn to the first decoded frame of ``tvcaption index``."""
    from speed import _FIRST_FRAME

    for stale in db.parent.glob(db.name + "*"):
        stale.unlink()
    if template is not None:
        shutil.copyfile(template, db)
    env = {"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", "HOME": str(db.parent),
           "TVCAPTION_DATABASE__URL": f"sqlite:///{db}", "BENCH_T0": repr(time.time())}
    if analysers:
        env["TVCAPTION_INDEX__ANALYSERS"] = analysers
    res = subprocess.run([sys.executable, "-c", _FIRST_FRAME, str(recording), "-c", str(tree / "tvcaption.toml")],
                         cwd=tree, env=env, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"{tree.name}: index exited {res.returncode}: {res.stderr[-1500:]}")
    return float(next(line.split()[1] for line in res.stderr.splitlines() if line.startswith("FIRST_FRAME")))


def _migrated(tree: Path, db: Path) -> Path:
    """A database file migrated to ``tree``'s head by that revision's own code."""
    db.unlink(missing_ok=True)
    subprocess.run([sys.executable, "-m", "tvcaption", "db", "upgrade", "--db", f"sqlite:///{db}"], cwd=tree,
                   env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", "HOME": str(db.parent)},
                   check=True, capture_output=True)
    return db


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="the baseline revision")
    ap.add_argument("b", help="the revision to compare with it")
    ap.add_argument("--runs", type=int, default=5, help="timed runs of each (default 5)")
    ap.add_argument("--minutes", type=float, default=1.0, help="length of the recording (default 1)")
    ap.add_argument("--analysers", help="[index] analysers for both, e.g. caption,tags (the speed target); "
                    "default: each revision's tvcaption.toml")
    ap.add_argument("--first-frame", action="store_true", help="time process start to the first decoded frame")
    ap.add_argument("--existing-db", action="store_true", help="with --first-frame: into an already migrated database")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="tvcaption-ab-") as tmp:
        work = Path(tmp)
        rec = work / f"broadcast-{args.minutes:g}min.ts"
        make_broadcast(rec, args.minutes)
        trees = {}
        try:
            for name, rev in (("a", args.a), ("b", args.b)):
                trees[name] = _worktree(rev, work / f"tree-{name}")
            templates = {name: _migrated(tree, work / f"{name}-template.db") if args.existing_db else None
                         for name, tree in trees.items()}

            def once(name: str, tree: Path) -> float:
                if args.first_frame:
                    return _first_frame_once(tree, rec, work / f"{name}.db", args.analysers, templates[name])
                return _index_once(tree, rec, work / f"{name}.db", args.analysers)

            for name, tree in trees.items():  # warm-up: page cache, .pyc files
                once(name, tree)
            times: dict[str, list[float]] = {"a": [], "b": []}
            for i in range(args.runs):
                for name, tree in trees.items():
                    times[name].append(once(name, tree))
                    print(f"run {i + 1} {name} ({getattr(args, name)}): {times[name][-1]:.2f} s", flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                               capture_output=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                    "avx512": " avx512f" in f" {proc_field('/proc/cpuinfo', 'flags') or ''}"}, "recording_minutes": args.minutes, "runs": args.runs,
        "analysers": args.analysers or "each revision's tvcaption.toml",
        "measured": ("process start to first decoded frame, " + ("existing database" if args.existing_db else "new database"))
        if args.first_frame else "whole tvcaption index run, new database",
        "a": {"rev": args.a, "wall_s": times["a"], "median_s": med["a"]},
        "b": {"rev": args.b, "wall_s": times["b"], "median_s": med["b"]},
        "b_over_a": med["b"] / med["a"],
    }
    print(f"median {args.a}: {med['a']:.2f} s (range {min(times['a']):.2f}-{max(times['a']):.2f}); "
          f"{args.b}: {med['b']:.2f} s (range {min(times['b']):.2f}-{max(times['b']):.2f}); "
          f"{args.b}/{args.a} = {result['b_over_a']:.3f}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
