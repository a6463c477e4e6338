"""The claim race: can a worker's claim lapse between the end of captioning and its saved result?

``test_workers.py::test_indexing_keeps_its_claim_past_the_timeout`` once failed on a loaded
machine: another claimant got the recording at 72.08 s of a run whose work ended at 71.94 s.
In the code there is no such window: ``_caption_and_save`` holds ``store.keep_alive(claim)`` (the
heartbeat renewing every claim_timeout / 4) around captioning, the file re-check and
``save_result``; and ``save_result`` first marks the row done only where the claim is still ours,
in the same transaction as the scenes, so the save either wins (a later claimant finds it done
with the same hash and model) or, when the claim was taken, raises ClaimLost and writes nothing.
A claim lapses only when the heartbeat thread does not run for a whole claim_timeout, which a
1-second timeout on a machine running 17 times slower than usual allows.

These tests open the window on purpose and hold it: the worker stops after captioning (or
inside the save transaction) for three claim timeouts while another claimant tries every 50 ms.
The control (heartbeat switched off) shows the same set-up does catch a lapse.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pytest
from toymodel import make_clip

pytest_plugins = ["pg", "toymodel"]
TIMEOUT = 0.5  # claim_timeout: renewed every 0.125 s
THIEF = "thief:1:x"  # a worker of another host: its pid is never checked


def _setup(toy, tmp_path: Path, backend: str, request) -> tuple:
    from tvcaption.config import load_config
    from tvcaption.engine import Engine

    url = f"sqlite:///{tmp_path / 'race.db'}" if backend == "sqlite" else request.getfixturevalue("fresh_pg_url")()
    config = load_config(toy.config(tmp_path / "cfg", url, claim_timeout=TIMEOUT), env={})
    return url, config, Engine(config), make_clip(tmp_path / "clip.mp4", seconds=2)


def _race(url: str, config, engine, clip: Path, window: threading.Event, held: threading.Event) -> tuple[list, object]:
    """Index ``clip`` in a thread; once it signals ``window`` a thief claims every 50 ms for three
    claim timeouts, then ``held`` lets the worker go on. Returns (seconds of each stolen claim, report)."""
    from tvcaption.db.store import Store
    from tvcaption.pipeline import content_hash, index_paths

    result: dict = {}
    worker = threading.Thread(target=lambda: result.setdefault("report", index_paths([clip], config, engine=engine)))
    stolen = []
    with Store(url, claim_timeout=TIMEOUT) as thief:
        worker.start()
        assert window.wait(120), "the worker never reached the window"
        opened, digest = time.monotonic(), content_hash(clip)
        threading.Timer(3 * TIMEOUT, held.set).start()  # the worker goes on then, whatever the thief is doing
        while not held.is_set():  # a claim during the save returns None at once
            if thief.claim(str(clip.resolve()), digest, THIEF, model=engine.model_name) is not None:
                stolen.append(round(time.monotonic() - opened, 2))
            time.sleep(0.05)
        worker.join(120)
        assert thief.claim(str(clip.resolve()), digest, THIEF, model=engine.model_name) is None or stolen
    return stolen, result["report"]


def _stop_after_captioning(monkeypatch, window: threading.Event, held: threading.Event) -> None:
    from tvcaption import pipeline

    captions_of = pipeline.captions_of

    def then_wait(*args, **kwargs):
        scenes = captions_of(*args, **kwargs)
        window.set()
        held.wait(60)
        return scenes

    monkeypatch.setattr(pipeline, "captions_of", then_wait)


@pytest.mark.parametrize("backend", [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_claim_holds_between_captioning_and_the_save(toy, tmp_path, monkeypatch, request, backend):
    from tvcaption.db.store import Store

    url, config, engine, clip = _setup(toy, tmp_path, backend, request)
    window, held = threading.Event(), threading.Event()
    _stop_after_captioning(monkeypatch, window, held)
    stolen, report = _race(url, config, engine, clip, window, held)
    assert not stolen and len(report.done) == 1 and not report.skipped and not report.failed, (stolen, report)
    with Store(url) as store:
        assert store.get_recording(report.done[0][0]).status == "done"


@pytest.mark.postgres
def test_the_claim_holds_inside_the_save_transaction(toy, tmp_path, monkeypatch, request):
    """The save marks the row done first, then writes the scenes: while it writes, the row is
    locked (a claimant is told at once that it is not its to take) and then done; no claimant
    gets in between."""
    import tvcaption.db.store as store_module

    url, config, engine, clip = _setup(toy, tmp_path, "postgres", request)
    window, held = threading.Event(), threading.Event()
    insert_scenes = store_module.insert_scenes

    def slow_insert(*args, **kwargs):
        window.set()
        held.wait(60)
        return insert_scenes(*args, **kwargs)

    monkeypatch.setattr(store_module, "insert_scenes", slow_insert)
    stolen, report = _race(url, config, engine, clip, window, held)
    assert not stolen and len(report.done) == 1 and not report.skipped, (stolen, report)


def test_control_without_the_heartbeat_the_claim_lapses(toy, tmp_path, monkeypatch, request):
    """The same window with renewals switched off: the thief gets the recording after one claim
    timeout, and the worker's save is refused (ClaimLost: reported skipped, nothing written)."""
    from tvcaption.db.store import Store

    url, config, engine, clip = _setup(toy, tmp_path, "sqlite", request)
    window, held = threading.Event(), threading.Event()
    _stop_after_captioning(monkeypatch, window, held)

    @contextlib.contextmanager
    def no_heartbeat(self, claim, every=None):
        yield type("Beat", (), {"lost": threading.Event()})()

    monkeypatch.setattr(Store, "keep_alive", no_heartbeat)
    stolen, report = _race(url, config, engine, clip, window, held)
    assert stolen and stolen[0] < 2 * TIMEOUT and not report.done and len(report.skipped) == 1, (stolen, report)


def _in_thread(fn) -> tuple[threading.Thread, dict]:
    out: dict = {}
    thread = threading.Thread(target=lambda: out.setdefault("value", fn()), daemon=True)
    thread.start()
    return thread, out


@pytest.mark.postgres
def test_a_claim_does_not_wait_for_a_worker_saving_the_recording(fresh_pg_url, monkeypatch):
    """PostgreSQL: the save holds the recording's row lock for its whole transaction. A claimant
    (another ``index`` walking the same folder) is told at once that the recording is not its to
    take; it used to wait for the save's commit (its INSERT ... ON CONFLICT waited on the lock)."""
    import tvcaption.db.store as store_module
    from tvcaption.db.store import Store

    url = fresh_pg_url()
    saving, held = threading.Event(), threading.Event()
    insert_scenes = store_module.insert_scenes

    def held_insert(*args, **kwargs):
        saving.set()
        held.wait(30)
        return insert_scenes(*args, **kwargs)

    monkeypatch.setattr(store_module, "insert_scenes", held_insert)
    with Store(url, claim_timeout=600) as saver, Store(url, claim_timeout=600) as other:
        claim = saver.claim("/a.ts", "h", "saver:1:x", model="m")
        save, _ = _in_thread(lambda: saver.save_result(claim, [], "m"))
        try:
            assert saving.wait(30)
            ask, asked = _in_thread(lambda: other.claim("/a.ts", "h", "other:2:y", model="m"))
            ask.join(5)
            assert not ask.is_alive(), "the claim waited for the save's transaction"
            assert asked["value"] is None
        finally:
            held.set()
            save.join(30)
        assert other.claim("/a.ts", "h", "other:2:y", model="m") is None  # done
        assert other.get_recording("/a.ts").status == "done"


@pytest.mark.postgres
def test_a_claim_skips_a_claim_in_progress_and_never_doubles_it(fresh_pg_url):
    """A row another claimant's transaction has locked is skipped at once, whatever it said when
    last committed (here: pending), and that claimant keeps it."""
    from sqlalchemy import update

    from tvcaption.db.store import Store, _now, recordings_t

    url = fresh_pg_url()
    with Store(url, claim_timeout=600) as store:
        store.release(store.claim("/b.ts", "h", "first:1:x").recording_id)
        with store.engine.connect() as rival, rival.begin():
            rival.execute(update(recordings_t).where(recordings_t.c.path == "/b.ts").values(
                status="processing", claimed_by="rival:3:z", claimed_at=_now()))
            ask, asked = _in_thread(lambda: store.claim("/b.ts", "h", "other:2:y"))
            ask.join(5)
            assert not ask.is_alive(), "the claim waited for the rival's transaction"
        assert asked["value"] is None
        assert store.get_recording("/b.ts").claimed_by == "rival:3:z"
