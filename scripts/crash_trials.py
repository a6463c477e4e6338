#!/usr/bin/env python
"""Crash trials: kill ``tvcaption index`` with SIGKILL at random moments, rerun it, check nothing is lost.

    .venv/bin/python scripts/crash_trials.py --trials 20                       # SQLite (WAL)
    .venv/bin/python scripts/crash_trials.py --trials 20 --db-url postgresql+psycopg://me@host/scratch

One clean run first gives the reference: the scenes and captions of every recording, when the
first recording row appears and how long the batch takes. Each trial then starts from an empty
database, starts ``tvcaption index`` over the same folder and kills it (SIGKILL, so nothing in
the process can clean up) once or twice: at a random time between shortly before the first write
and the end of the batch, or a random moment after the k-th recording (k random) was claimed,
which mostly lands while that recording is being captioned with its claim open. After every kill
it checks the state a reader would see, then reruns the batch to completion and checks the final
state:

- after a kill: the database opens and is intact (SQLite ``PRAGMA integrity_check``); every
  recording that is ``done`` has exactly its reference scenes; no recording is ``failed``; no
  (recording, start) pair appears twice; search returns only recordings that are done and
  complete.
- after the rerun (exit code 0): every recording is done exactly once with exactly the reference
  scenes and captions (one caption per scene, annotations only on existing scenes), no claims are left,
  recordings that were done before the kill were skipped (not indexed again), and the rerun did
  not wait for the dead worker's claims (it takes a claim of a dead process of this host at once).

The recordings are made with ffmpeg (2.4-6 s each, hard cuts between test patterns). The
model is ``--model`` (a checkpoint stem), or a toy one trained here with ``tests/toymodel.py``
when none is given. The PostgreSQL database given by ``--db-url`` is emptied (TRUNCATE) before
every run: pass a scratch database. Exit status 0 when every trial passed; ``--json`` writes a
summary.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

SOURCES = ["testsrc2", "smptebars", "mandelbrot", "rgbtestsrc", "cellauto", "life"]


def make_recordings(folder: Path, count: int, rng: random.Random) -> list[Path]:
    """``count`` clips of 2.4-6 s, each 3-5 segments of different test patterns joined by hard cuts."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        segments = rng.sample(SOURCES, rng.choice([3, 4, 5]))
        inputs: list[str] = []
        for s in segments:
            length = rng.choice([0.8, 1.0, 1.2])
            inputs += ["-f", "lavfi", "-t", str(length), "-i", f"{s}=size=96x64:rate=10"]
        chain = "".join(f"[{k}:v]format=yuv420p,setsar=1[v{k}];" for k in range(len(segments)))
        chain += "".join(f"[v{k}]" for k in range(len(segments))) + f"concat=n={len(segments)}:v=1:a=0[out]"
        path = folder / f"rec{i:02d} {'-'.join(segments)}.mp4"
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *inputs, "-filter_complex", chain, "-map", "[out]",
                        "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", str(path)],
                       check=True, capture_output=True, timeout=120)
        out.append(path)
    return out


# --- the database -----------------------------------------------------------------------------------

class Database:
    """A fresh database per run: a new SQLite file, or the given PostgreSQL database emptied."""

    def __init__(self, url: str | None, work: Path):
        self.pg_url = url
        self.work = work
        self.count = 0
        self.url = ""

    def fresh(self) -> str:
        from tvcaption.db.store import connect

        self.count += 1
        if self.pg_url:
            engine = connect(self.pg_url)
            with engine.begin() as conn:
                conn.exec_driver_sql("TRUNCATE recordings, models RESTART IDENTITY CASCADE")
            engine.dispose()
            self.url = self.pg_url
        else:
            self.url = f"sqlite:///{self.work / f'run{self.count:03d}.db'}"
            connect(self.url).dispose()  # created and migrated before the indexer starts
        return self.url

    def rows(self) -> int:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                return conn.execute(text("SELECT count(*) FROM recordings")).scalar_one()
        except Exception:  # noqa: BLE001 - locked or not created yet
            return 0
        finally:
            engine.dispose()


def snapshot(url: str) -> dict:
    """What a reader sees: recordings, their scenes, duplicates, integrity."""
    from sqlalchemy import text

    from tvcaption.db.store import Store, connect

    engine = connect(url, migrate=False)
    store = Store(engine)
    try:
        with engine.connect() as conn:
            integrity = "ok"
            if engine.dialect.name == "sqlite":
                integrity = conn.exec_driver_sql("PRAGMA integrity_check").scalar_one()
            duplicates = conn.execute(text(
                "SELECT count(*) FROM (SELECT recording_id, start FROM scenes GROUP BY recording_id, start "
                "HAVING count(*) > 1) d")).scalar_one()
            orphans = conn.execute(text(
                "SELECT count(*) FROM annotations WHERE scene_id NOT IN (SELECT id FROM scenes)")).scalar_one()
            captions_per_scene = conn.execute(text(
                "SELECT count(*) FROM scenes s WHERE (SELECT count(*) FROM annotations a "
                "WHERE a.scene_id = s.id AND a.kind = 'caption') != 1")).scalar_one()
        recordings = {r.path: r for r in store.recordings()}
        scenes = {path: [(round(s.start, 4), round(s.end, 4), s.caption) for s in store.scenes_of(path)]
                  for path in recordings}
        return dict(integrity=integrity, duplicates=duplicates, orphans=orphans,
                    captions_per_scene=captions_per_scene, recordings=recordings, scenes=scenes, engine=engine)
    except BaseException:
        engine.dispose()
        raise


def searchable_words(scene) -> list[str]:
    """Words of a scene's caption and tags that search does not ignore (a toy model's caption
    may be all stop words, "we we we")."""
    from tvcaption.db.bm25 import STOP_WORDS

    return [w for w in scene.caption.split() + list(scene.tags) if w.lower() not in STOP_WORDS and len(w) > 3]


def searched_recordings(engine, words: list[str]) -> dict[str, int]:
    from tvcaption.db.search import search

    seen: dict[str, int] = {}
    for word in words:
        for hit in search(engine, word, limit=10_000):
            seen[hit.recording] = seen.get(hit.recording, 0) + 1
    return seen


def check_partial(url: str, reference: dict, words: list[str]) -> list[str]:
    snap = snapshot(url)
    problems = []
    try:
        if snap["integrity"] != "ok":
            problems.append(f"integrity_check: {snap['integrity']}")
        if snap["duplicates"]:
            problems.append(f"{snap['duplicates']} duplicate (recording, start) scene rows")
        if snap["orphans"] or snap["captions_per_scene"]:
            problems.append(f"{snap['orphans']} orphan rows, {snap['captions_per_scene']} scenes without exactly one caption")
        for path, rec in snap["recordings"].items():
            if rec.status == "failed":
                problems.append(f"{path}: failed after a kill ({rec.error})")
            if rec.status == "done" and snap["scenes"][path] != reference[path]:
                problems.append(f"{path}: done with {len(snap['scenes'][path])} scenes, reference has {len(reference[path])}")
        for path in searched_recordings(snap["engine"], words):
            rec = snap["recordings"].get(path)
            if rec is None or rec.status != "done" or snap["scenes"][path] != reference[path]:
                problems.append(f"{path}: visible in search while not completely indexed")
    finally:
        snap["engine"].dispose()
    return problems


def check_final(url: str, reference: dict, words: list[str], done_before: dict) -> list[str]:
    problems = check_partial(url, reference, words)
    snap = snapshot(url)
    try:
        recs = snap["recordings"]
        if set(recs) != set(reference):
            problems.append(f"recordings {sorted(recs)} != files {sorted(reference)}")
        for path in reference:
            rec = recs.get(path)
            if rec is None:
                continue
            if rec.status != "done":
                problems.append(f"{path}: {rec.status} after the rerun ({rec.error or rec.claimed_by})")
            elif snap["scenes"][path] != reference[path]:
                problems.append(f"{path}: scenes differ from the clean run")
            if rec.claimed_by or rec.claimed_at:
                problems.append(f"{path}: claim left behind ({rec.claimed_by})")
            if path in done_before and rec.indexed_at != done_before[path]:
                problems.append(f"{path}: done before the kill but indexed again")
        if set(searched_recordings(snap["engine"], words)) != set(reference):
            problems.append("search does not find every recording after the rerun")
    finally:
        snap["engine"].dispose()
    return problems


# --- running the indexer ----------------------------------------------------------------------------

def indexer(folder: Path, config: Path, url: str, log: Path) -> subprocess.Popen:
    """``tvcaption index FOLDER`` in a process of its own, its output into ``log``."""
    from toymodel import subprocess_env, tvcaption_exe

    cmd = [*tvcaption_exe(), "index", str(folder), "--config", str(config)]
    with log.open("w") as out:  # a file, not a pipe: a full pipe would stall the indexer
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=subprocess_env(TVCAPTION_DATABASE__URL=url))


def reference_run(db: Database, folder: Path, config: Path) -> tuple[dict, list[str], float, float]:
    from tvcaption.db.store import Store, connect

    url = db.fresh()
    started = time.monotonic()
    log = db.work / "reference.log"
    proc = indexer(folder, config, url, log)
    first = None
    while proc.poll() is None:
        if first is None and db.rows():
            first = time.monotonic() - started
        time.sleep(0.05)
    total = time.monotonic() - started
    output = log.read_text(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"the clean reference run failed (exit {proc.returncode}):\n{output}")
    with Store(connect(url)) as store:
        stored = {r.path: store.scenes_of(r.path) for r in store.recordings()}
    reference = {path: [(round(s.start, 4), round(s.end, 4), s.caption) for s in found] for path, found in stored.items()}
    words = sorted({w for found in stored.values() for s in found for w in searchable_words(s)})[:12]
    return reference, words, first if first is not None else total / 2, total


def trial(i: int, rng: random.Random, db: Database, folder: Path, config: Path, reference: dict, words: list[str],
          first: float, total: float) -> dict:
    from tvcaption.db.store import Store, connect

    url = db.fresh()
    result = {"trial": i, "kills": [], "problems": []}
    per_recording = max(0.05, (total - first) / len(reference))
    for _ in range(rng.choice([1, 1, 2])):
        # half the kills at a random time of the batch (start-up included), half a random moment
        # after the k-th recording was claimed, where most of the time goes to captioning it
        mode = rng.choice(["time", "progress"])
        wait_for = rng.randint(1, len(reference)) if mode == "progress" else 0
        delay = rng.uniform(0.0, 1.5 * per_recording) if mode == "progress" \
            else rng.uniform(max(0.0, first - 1.0), 0.95 * total)
        started = time.monotonic()
        proc = indexer(folder, config, url, db.work / "killed.log")
        while wait_for and proc.poll() is None and db.rows() < wait_for:
            time.sleep(0.05)
        try:
            proc.wait(timeout=delay)
            finished = True  # it ended before the kill: nothing to kill
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            finished = False
        at = time.monotonic() - started
        with Store(connect(url)) as store:
            recs = store.recordings()
        state = {s: sum(r.status == s for r in recs) for s in ("done", "processing", "pending", "failed")}
        result["kills"].append({"at": round(at, 2), "mode": mode, "finished_first": finished, **state})
        result["problems"] += [f"after kill at {at:.2f}s: {p}" for p in check_partial(url, reference, words)]
    with Store(connect(url)) as store:
        done_before = {r.path: r.indexed_at for r in store.recordings(status="done")}
    t0 = time.monotonic()
    log = db.work / "rerun.log"
    proc = indexer(folder, config, url, log)
    try:
        proc.wait(timeout=max(120.0, 10 * total))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    result["rerun_seconds"] = round(time.monotonic() - t0, 2)
    if proc.returncode != 0:
        result["problems"].append(f"rerun exited {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
    result["problems"] += [f"after the rerun: {p}" for p in check_final(url, reference, words, done_before)]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20, help="kill-and-rerun trials (default 20)")
    parser.add_argument("--recordings", type=int, default=5, help="recordings in the batch (default 5)")
    parser.add_argument("--model", type=Path, help="checkpoint stem (default: train a toy model first)")
    parser.add_argument("--db-url", help="PostgreSQL scratch database (emptied before every run); default SQLite files")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-kills", type=int, default=0,
                        help="run more trials (up to 3x --trials) until this many kills hit a running batch: on a "
                             "loaded machine the batch can end before the drawn moment")
    parser.add_argument("--json", type=Path, help="write a JSON summary here")
    args = parser.parse_args(argv)

    from toymodel import build_toy, write_config

    work = args.work or Path(tempfile.mkdtemp(prefix="tvcaption-crash-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    model = args.model
    if model is None:
        print("training a toy model ...", flush=True)
        model = build_toy(work / "toy").model
    folder = work / "recordings"
    files = make_recordings(folder, args.recordings, rng)
    config = write_config(work / "config", model, "sqlite:///unused.db")  # the URL comes from the environment
    db = Database(args.db_url, work)

    reference, words, first, total = reference_run(db, folder, config)
    # time a second, warm run too: a cold first run (page cache, a loaded CI machine) can take 3x
    # longer, and kill times drawn from it would mostly fall after the batch has ended
    _, _, first2, total2 = reference_run(db, folder, config)
    first, total = min(first, first2), min(total, total2)
    if not words:
        raise SystemExit("the clean reference run stored no searchable word (captions and tags all stop words)")
    backend = "postgresql" if args.db_url else "sqlite"
    print(f"{backend}: {len(files)} recordings, {sum(map(len, reference.values()))} scenes; clean run {total:.1f}s, "
          f"first write at {first:.1f}s", flush=True)
    if len(reference) != len(files) or not all(reference.values()):
        raise SystemExit("the clean reference run did not index every recording")

    results = []
    i = 0
    while i < args.trials or (sum(not k["finished_first"] for r in results for k in r["kills"]) < args.min_kills
                              and i < 3 * args.trials):
        r = trial(i, rng, db, folder, config, reference, words, first, total)
        results.append(r)
        kills = ", ".join(f"{k['at']}s [{k['mode']}] ({'ended first' if k['finished_first'] else 'killed'}: "
                          f"{k['done']} done, {k['processing']} claimed)" for k in r["kills"])
        print(f"trial {i + 1}/{args.trials}: kill at {kills}; rerun {r['rerun_seconds']}s: "
              f"{'ok' if not r['problems'] else 'FAILED'}", flush=True)
        for p in r["problems"]:
            print(f"  {p}", flush=True)
        i += 1

    kills = [k for r in results for k in r["kills"]]
    summary = {
        "backend": backend, "recordings": len(files), "trials": len(results),
        "kills": sum(not k["finished_first"] for k in kills),
        "kills_with_a_claim_open": sum(k["processing"] > 0 for k in kills if not k["finished_first"]),
        "kills_mid_batch": sum(0 < k["done"] < len(files) for k in kills if not k["finished_first"]),
        "clean_run_seconds": round(total, 2),
        "failures": [{"trial": r["trial"], "problems": r["problems"]} for r in results if r["problems"]],
        "results": results,
    }
    print(f"{summary['trials']} trials, {summary['kills']} kills ({summary['kills_with_a_claim_open']} with a claim "
          f"open, {summary['kills_mid_batch']} mid-batch): {len(summary['failures'])} failed trial(s)")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1, default=str))
    if summary["failures"]:
        print(f"databases and logs kept in {work}")
        return 1
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
