"""Several ``tvcaption index`` processes on one database: the work is shared, nothing done twice.

- Claims: a live claim is skipped at once; a claim of a worker of our process space (host, boot,
  pid namespace) whose process is gone is taken at once; any other goes stale after
  ``claim_timeout`` without renewal, and a worker renews its claim while it captions.
- Four worker processes (``.venv/bin/tvcaption index``) on one PostgreSQL database and one folder:
  every recording indexed by exactly one of them, a dead worker's old claim taken over.
- SQLite: two indexers on one file finish without corrupting or duplicating anything; a writer
  that holds the lock too long makes the indexer stop with one clear line, nothing half-written.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from annotated import annotated
from tvcaption.db.store import Store, connect, process_space, worker_id, worker_is_dead

pytest_plugins = ["pg", "toymodel"]  # toymodel: the session's `toy` fixture
runner = CliRunner()

HOST = socket.gethostname()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid names no process now (until the system hands it out again)
    return proc.pid


# --- claims -----------------------------------------------------------------------------------------

def test_worker_ids():
    space = process_space()
    assert worker_id() == f"{HOST}:{os.getpid()}:{space}" and len(space) == 12
    assert not worker_is_dead(worker_id())
    assert worker_is_dead(f"{HOST}:{dead_pid()}:{space}")
    for other in (None, "", "worker-a", f"elsewhere.example:{dead_pid()}:{space}", f"{HOST}:x:{space}",
                  f"{HOST}:0:{space}", f"{HOST}:1:{space}",
                  f"{HOST}:{dead_pid()}:0123456789ab",  # same host name, another container or boot
                  f"{HOST}:{dead_pid()}"):  # an id without a process space cannot be checked
        assert not worker_is_dead(other), other  # pid 1 lives; other hosts cannot be checked


def test_another_pid_namespace_is_another_process_space():
    """A worker in another container (here: a new pid namespace) on this host gets another key,
    so its pids are never checked against ours."""
    probe = [sys.executable, "-c", "from tvcaption.db.store import worker_id; print(worker_id())"]
    try:
        inside = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", *probe],
                                capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        pytest.skip("unshare (util-linux) is not installed")
    except subprocess.TimeoutExpired:
        pytest.skip("unshare did not finish in 60 s here")
    if inside.returncode != 0:
        pytest.skip(f"cannot make a pid namespace here: {inside.stderr.strip()[:200]}")
    host, pid, space = inside.stdout.strip().split(":")
    assert host == HOST and int(pid) == 1  # pid 1 of its own namespace
    assert space != process_space()
    assert not worker_is_dead(f"{HOST}:{dead_pid()}:{space}")


def test_claim_of_a_dead_local_worker_is_taken_at_once(db_url: str):
    with Store(db_url, claim_timeout=600) as store:
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            live = store.claim("/live.ts", "h", f"{HOST}:{sleeper.pid}:{process_space()}")
            assert live is not None and store.claim("/live.ts", "h", worker_id()) is None  # alive: hands off
            gone = dead_pid()
            first = store.claim("/killed.ts", "h", f"{HOST}:{gone}:{process_space()}")
            second = store.claim("/killed.ts", "h", worker_id())  # the worker was SIGKILLed: take it now
            assert second is not None and second.recording_id == first.recording_id
            assert store.get_recording("/killed.ts").claimed_by == worker_id()
        finally:
            sleeper.kill()
            sleeper.wait()
        assert store.claim("/live.ts", "h", worker_id()) is not None  # and once it is gone, at once too


# Wall-clock margins. A loaded 2-core CI machine can stall a thread or a database round trip for a
# good fraction of a second, so every "not yet stale" check has seconds to spare, and every "stale
# now" check sleeps past the timeout (sleeping only ever lasts longer, so that side holds anyway).

def test_claim_of_another_host_goes_stale_after_the_timeout(db_url: str):
    timeout = 2.0
    with Store(db_url, claim_timeout=timeout) as store:
        assert store.claim("/a.ts", "h", "render-02:4242") is not None
        assert store.claim("/a.ts", "h", worker_id()) is None  # cannot tell whether it lives: wait
        time.sleep(timeout + 0.1)
        claim = store.claim("/a.ts", "h", worker_id())
        assert claim is not None
        store.save_result(claim, [annotated(0.0, 1.0, 0, 25, "a man sings")], "m")
        assert store.get_recording("/a.ts").status == "done"


def test_a_renewed_claim_does_not_go_stale(db_url: str):
    timeout = 1.0  # renewed every 0.05 s: it would take 20 missed beats in a row to lose it
    with Store(db_url, claim_timeout=timeout) as store:
        mine = store.claim("/long.ts", "h", "render-01:7:abc")  # a worker busy with a long recording
        started = time.monotonic()
        with store.keep_alive(mine, every=0.05) as beat:
            while time.monotonic() - started < 2 * timeout:  # well past the timeout
                time.sleep(0.1)
                assert store.claim("/long.ts", "h", worker_id()) is None
        assert beat.renewals >= 5 and not beat.lost.is_set()  # about 40 when the machine is idle
        time.sleep(timeout + 0.2)  # no more renewals: now it goes stale
        taken = store.claim("/long.ts", "h", worker_id())
        assert taken is not None
        assert not store.renew(mine) and store.renew(taken)
        with store.keep_alive(mine, every=0.05) as beat:  # the old owner learns at its next beat
            assert beat.lost.wait(10.0)
        assert store.get_recording("/long.ts").claimed_by == worker_id()


def test_indexing_keeps_its_claim_past_the_timeout(toy, tmp_path):
    """index_paths renews its claim while it captions: another worker polling all the while never
    gets the recording, even though the work lasts several claim timeouts.

    The other worker claims as a worker does, with the file's content hash and the model: once the
    result is saved that claim is refused as "already indexed", so only a claim that lapsed
    before the save (while the recording was still being captioned) counts as stolen.
    """
    import threading

    from tvcaption.config import load_config
    from tvcaption.engine import Engine
    from tvcaption.pipeline import content_hash, index_paths
    from toymodel import make_clip

    url = f"sqlite:///{tmp_path / 'archive.db'}"
    timeout = 1.0  # renewed every 0.25 s
    clip = make_clip(tmp_path / "long.mp4", seconds=600, size="160x120", rate=25)  # ~4 s of work here
    config = load_config(toy.config(tmp_path / "cfg", url, claim_timeout=timeout), env={})
    engine = Engine(config)  # warmed up first: one-off start-up work holds the GIL for a
    index_paths([make_clip(tmp_path / "warm.mp4")], config, engine=engine)  # while, and a loaded CI machine stretches it
    result: dict = {}
    worker = threading.Thread(target=lambda: result.setdefault("report", index_paths([clip], config, engine=engine)))
    key, digest, thief = str(clip.absolute()), content_hash(clip), "thief:1:x"  # another host: no pid check
    started, stolen = time.perf_counter(), []
    with Store(url, claim_timeout=timeout) as store:
        worker.start()
        while worker.is_alive():
            time.sleep(0.05)
            rec = store.get_recording(key)
            if rec is not None and rec.status == "processing" and rec.claimed_by != thief:
                if store.claim(key, digest, thief, model=engine.model_name) is not None:
                    stolen.append(round(time.perf_counter() - started, 2))  # seconds into the run
        worker.join()
        report = result["report"]
        # a stolen claim shows twice: here, and as the worker's ClaimLost (its result is dropped: skipped)
        assert not stolen and not report.failed and not report.skipped, (stolen, report)
        (path, scenes, seconds), = report.done
        assert seconds > 1.5 * timeout, "captioning was too quick to outlast the claim timeout; lengthen the clip"
        assert store.get_recording(path).status == "done" and scenes > 0


@pytest.mark.postgres
def test_postgres_live_claims_are_skipped_not_waited_on(fresh_pg_url):
    store = Store(fresh_pg_url() + "?options=-c%20lock_timeout%3D5000")  # ms: no test hangs on a lock
    store.mark_failed("/locked.ts", "earlier failure")
    assert store.claim("/claimed.ts", "h", "render-02:4242") is not None
    with store.engine.connect() as other:  # another worker is inside its claim transaction
        other.execute(text("SELECT id FROM recordings WHERE path = '/locked.ts' FOR UPDATE"))
        started = time.monotonic()
        assert store.claim("/locked.ts", "h", worker_id()) is None
        assert store.claim("/claimed.ts", "h", worker_id()) is None
        # a claim that waited for the lock would wait until the rollback below, i.e. forever: the
        # lock_timeout above turns that into an error after 5 s, and the bound stays under it
        assert time.monotonic() - started < 4.0
        other.rollback()
    store.close()


# --- worker processes -------------------------------------------------------------------------------

def make_folder(folder: Path, count: int) -> list[Path]:
    from toymodel import make_clip

    folder.mkdir(parents=True)
    sources = ["testsrc2", "smptebars", "mandelbrot", "rgbtestsrc", "cellauto", "life", "testsrc", "yuvtestsrc"]
    return [make_clip(folder / f"rec{i:02d}.mp4", seconds=2.0, source=f"{sources[i % len(sources)]}=size=96x64:rate=10")
            for i in range(count)]


def summary_counts(output: str) -> dict[str, int]:
    """The numbers of the ``index summary`` table: indexed, scenes, skipped, failed."""
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) == 5 and all(c.isdigit() for c in cells[:4]):
            return dict(zip(("indexed", "scenes", "skipped", "failed"), map(int, cells[:4])))
    raise AssertionError(f"no summary in:\n{output}")


def start_worker(folder: Path, config: Path, url: str, log: Path, **env: str) -> subprocess.Popen:
    from toymodel import subprocess_env, tvcaption_exe

    with log.open("w") as out:
        return subprocess.Popen([*tvcaption_exe(), "index", str(folder), "--config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT,
                                env=subprocess_env(TVCAPTION_DATABASE__URL=url, **env))


def finish(workers: list[subprocess.Popen], logs: list[Path], timeout: float = 600) -> list[str]:
    deadline = time.monotonic() + timeout
    for w in workers:
        try:
            w.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for v in workers:
                v.kill()
            raise
    outputs = [log.read_text(errors="replace") for log in logs]
    for w, out in zip(workers, outputs):
        assert w.returncode == 0, out
    return outputs


def check_each_once(store: Store, files: list[Path]) -> None:
    recs = store.recordings()
    assert sorted(r.path for r in recs) == sorted(str(f.absolute()) for f in files)
    assert all(r.status == "done" and r.claimed_by is None for r in recs), [(r.path, r.status) for r in recs]
    with store.engine.connect() as conn:
        dupes = conn.execute(text("SELECT count(*) FROM (SELECT recording_id, start FROM scenes "
                                  "GROUP BY recording_id, start HAVING count(*) > 1) d")).scalar_one()
        per_scene = conn.execute(text("SELECT count(*) FROM scenes s WHERE "
                                      "(SELECT count(*) FROM annotations c WHERE c.scene_id = s.id AND c.kind = 'caption') != 1")).scalar_one()
    assert dupes == 0 and per_scene == 0
    for r in recs:
        scenes = store.scenes_of(r.path)
        assert [s.index for s in scenes] == list(range(len(scenes))) and scenes[-1].end == pytest.approx(r.duration)


@pytest.mark.postgres
def test_four_workers_share_one_folder_on_postgres(toy, fresh_pg_url, tmp_path):
    url = fresh_pg_url()
    files = make_folder(tmp_path / "archive", 8)
    config = toy.config(tmp_path / "cfg", "sqlite:///unused.db")  # the URL comes from the environment
    store = Store(url)
    # a worker of another machine claimed rec03 an hour ago and died: its claim is stale
    stale = str(files[3].absolute())
    store.claim(stale, "an older version", "render-02:4242")
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE recordings SET claimed_at = claimed_at - interval '1 hour'"))

    # hold the workers at the start line: each blocks on its first claim until all four wait there
    gate = store.engine.connect()
    gate.execute(text("LOCK TABLE recordings IN EXCLUSIVE MODE"))
    logs = [tmp_path / f"worker{i}.log" for i in range(4)]
    workers = [start_worker(tmp_path / "archive", config, url, log) for log in logs]
    try:
        deadline = time.monotonic() + 300
        with store.engine.connect() as conn:
            while conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                    "AND wait_event_type = 'Lock'")).scalar_one() < 4:
                assert time.monotonic() < deadline and all(w.poll() is None for w in workers), \
                    [log.read_text() for log in logs]
                time.sleep(0.2)
                conn.rollback()
    finally:
        gate.rollback()
        gate.close()
    outputs = finish(workers, logs)

    counts = [summary_counts(out) for out in outputs]
    print("recordings indexed per worker:", [c["indexed"] for c in counts])
    assert sum(c["indexed"] for c in counts) == len(files), counts  # each recording by exactly one worker
    assert all(c["indexed"] + c["skipped"] == len(files) and c["failed"] == 0 for c in counts), counts
    assert sum(c["indexed"] > 0 for c in counts) >= 2, counts  # they did share the work
    check_each_once(store, files)
    assert store.get_recording(stale).content_hash != "an older version"
    assert store.stats().scenes == sum(c["scenes"] for c in counts)
    store.close()


def test_two_indexers_on_one_sqlite_file(toy, tmp_path):
    url = f"sqlite:///{tmp_path / 'archive.db'}"
    files = make_folder(tmp_path / "archive", 4)
    config = toy.config(tmp_path / "cfg", url)
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    outputs = finish([start_worker(tmp_path / "archive", config, url, log) for log in logs], logs)
    counts = [summary_counts(out) for out in outputs]
    assert sum(c["indexed"] for c in counts) == len(files), counts  # short write transactions interleave
    store = Store(url)
    check_each_once(store, files)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
    store.close()


def test_sqlite_writer_holding_the_lock_stops_the_indexer_with_one_line(toy, tmp_path):
    from tvcaption.cli import app

    db = tmp_path / "archive.db"
    url = f"sqlite:///{db}"
    files = make_folder(tmp_path / "archive", 1)
    config = toy.config(tmp_path / "cfg", url)
    connect(url).dispose()
    holder = subprocess.Popen(  # another process in a long write transaction
        [sys.executable, "-c", "import sqlite3, sys, time\n"
         f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
         "c.execute('BEGIN IMMEDIATE'); c.execute('DELETE FROM models'); print('locked', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = runner.invoke(app, ["index", str(tmp_path / "archive"), "--config", str(config)])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if "database is locked" in line]
    assert len(errors) == 1 and errors[0].startswith("error:") and str(db) in errors[0] and "PostgreSQL" in errors[0]
    assert "Traceback" not in result.output
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT count(*) FROM recordings").fetchone() == (0,)  # nothing half-written, no 'failed'
    again = runner.invoke(app, ["index", str(tmp_path / "archive"), "--config", str(config)])
    assert again.exit_code == 0, again.output
    with Store(url) as store:
        check_each_once(store, files)


def test_a_worker_whose_claim_was_taken_over_does_not_overwrite(db_url: str):
    from tvcaption.db.store import ClaimLost

    with Store(db_url, claim_timeout=0.2) as store:
        slow = store.claim("/b.ts", "h", "render-02:4242")  # a worker on another host that stalls
        time.sleep(0.3)
        fresh = store.claim("/b.ts", "h", worker_id())
        assert fresh is not None
        with pytest.raises(ClaimLost, match="/b.ts"):  # while the new owner is still at work
            store.save_result(slow, [annotated(0.0, 1.0, 0, 25, "stale result")], "m")
        assert store.get_recording("/b.ts").status == "processing"
        store.save_result(fresh, [annotated(0.0, 2.0, 0, 50, "fresh result")], "m")
        with pytest.raises(ClaimLost):  # and after it has finished
            store.save_result(slow, [annotated(0.0, 1.0, 0, 25, "stale result")], "m")
        assert [s.caption for s in store.scenes_of("/b.ts")] == ["fresh result"]
        assert store.get_recording("/b.ts").status == "done"
