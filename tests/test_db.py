"""Storage on both backends: claims, atomic saves, failures, locking, cascades."""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from tvcaption.db import migrate
from tvcaption.db.search import search
from tvcaption.db.store import ModelInfo, SceneRecord, Store, connect
from tvcaption.errors import DatabaseError

pytest_plugins = ["pg"]

PROBE = {"duration": 12.5, "fps": 25.0, "width": 720, "height": 576, "codec": "mpeg2video"}


def scenes(*captions: str) -> list[SceneRecord]:
    return [SceneRecord(start=2.0 * i, end=2.0 * i + 2.0, start_frame=50 * i, end_frame=50 * i + 50,
                        caption=c, score=-0.5, tags=[(f"label{i}", 0.9), ("common", 0.1)])
            for i, c in enumerate(captions)]


@pytest.fixture
def store(db_url: str):
    with Store(db_url) as s:
        yield s


def count(store: Store, table: str) -> int:
    with store.engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_claim_save_read_back(store: Store):
    claim = store.claim("/archive/news.ts", "hash1", "worker-a", PROBE)
    assert claim is not None and claim.worker == "worker-a"
    rec = store.get_recording("/archive/news.ts")
    assert rec.status == "processing" and rec.claimed_by == "worker-a" and rec.duration == 12.5
    assert rec.probe == PROBE and rec.claimed_at.tzinfo is not None

    n = store.save_result(claim, scenes("a man sings on a stage", "a dog runs"),
                          ModelInfo("lstap-synthtv", sha256="ab" * 32, meta={"frames": 30}))
    assert n == 2
    rec = store.get_recording("/archive/news.ts")
    assert (rec.status, rec.model, rec.claimed_by, rec.error) == ("done", "lstap-synthtv", None, None)
    assert rec.indexed_at is not None
    stored = store.scenes_of("/archive/news.ts")
    assert [s.caption for s in stored] == ["a man sings on a stage", "a dog runs"]
    assert stored[1].start == 2.0 and stored[1].end == 4.0 and stored[1].end_frame == 100
    assert stored[0].tags == (("label0", 0.9), ("common", 0.1))
    assert store.scenes_of(claim.recording_id) == stored
    assert store.scenes_of("/nowhere.ts") == []

    stats = store.stats()
    assert (stats.recordings, stats.scenes, stats.captions, stats.tags, stats.models) == (1, 2, 2, 4, 1)
    assert stats.by_status == {"done": 1} and stats.indexed_seconds == 12.5
    assert [r.path for r in store.recordings(status="done")] == ["/archive/news.ts"]
    assert [r.path for r in store.recordings(content_hash="hash1")] == ["/archive/news.ts"]
    assert store.recordings(status="failed") == []


def test_claim_skips_done_unless_changed(store: Store):
    claim = store.claim("/a.ts", "h1", "w", PROBE, model="m1")
    store.save_result(claim.recording_id, scenes("x"), "m1")
    assert store.claim("/a.ts", "h1", "w", PROBE, model="m1") is None
    assert store.claim("/a.ts", "h1", "w", PROBE) is None  # no model given: the hash decides
    assert store.claim("/a.ts", "h1", "w", PROBE, model="m2") is not None  # new model
    store.save_result(claim.recording_id, scenes("x"), "m2")
    assert store.claim("/a.ts", "h2", "w", PROBE, model="m2") is not None  # file changed
    store.save_result(claim.recording_id, scenes("x"), "m2")
    assert store.claim("/a.ts", "h2", "w", PROBE, model="m2", reindex=True) is not None


def test_live_claim_blocks_others_until_stale(db_url: str):
    with Store(db_url, claim_timeout=600) as store:
        first = store.claim("/a.ts", "h", "worker-a")
        assert first is not None
        assert store.claim("/a.ts", "h", "worker-b") is None
        assert store.claim("/a.ts", "h", "worker-b", reindex=True) is None  # reindex does not steal
        assert store.claim("/a.ts", "h", "worker-a") is not None  # the same worker may resume
        with store.engine.begin() as conn:  # worker-a died an hour ago
            conn.execute(text("UPDATE recordings SET claimed_at = :t"),
                         {"t": first.claimed_at - timedelta(hours=1)})
        second = store.claim("/a.ts", "h", "worker-b")
        assert second is not None and second.recording_id == first.recording_id
        assert store.get_recording("/a.ts").claimed_by == "worker-b"


def test_release_makes_pending(store: Store):
    claim = store.claim("/a.ts", "h", "worker-a")
    store.release(claim.recording_id)
    assert store.get_recording("/a.ts").status == "pending"
    assert store.claim("/a.ts", "h", "worker-b") is not None


def test_save_replaces_old_scenes(store: Store):
    claim = store.claim("/a.ts", "h", "w")
    store.save_result(claim.recording_id, scenes("an old caption about cats", "two", "three"), "m")
    claim = store.claim("/a.ts", "h", "w", reindex=True)
    store.save_result(claim.recording_id, scenes("a new caption about dogs"), "m")
    assert [s.caption for s in store.scenes_of("/a.ts")] == ["a new caption about dogs"]
    assert (count(store, "scenes"), count(store, "captions"), count(store, "tags")) == (1, 1, 2)
    assert search(store, "cats") == []
    assert [h.caption for h in search(store, "dogs")] == ["a new caption about dogs"]
    assert store.save_result(claim.recording_id, [], "m") == 0
    assert store.scenes_of("/a.ts") == [] and search(store, "dogs") == []


def test_failed_save_leaves_old_state(store: Store):
    claim = store.claim("/a.ts", "h", "w")
    store.save_result(claim.recording_id, scenes("a man sings", "a crowd cheers"), "m")
    before = store.scenes_of("/a.ts")
    claim = store.claim("/a.ts", "h", "w", reindex=True)
    assert store.get_recording("/a.ts").status == "processing"
    bad = scenes("a woman dances", "a cat sleeps")
    bad.append(SceneRecord(4.0, 6.0, 100, 150, "last", tags=[(None, 0.5)]))  # NOT NULL fails in the last INSERT
    with pytest.raises(IntegrityError):
        store.save_result(claim.recording_id, bad, "m2")
    assert store.scenes_of("/a.ts") == before
    rec = store.get_recording("/a.ts")
    assert rec.status == "processing" and rec.model == "m"  # the claim is still open; nothing was written
    assert count(store, "models") == 1
    store.save_result(claim.recording_id, scenes("a man sings"), "m")  # the old state is still consistent
    assert [h.caption for h in search(store, "man")] == ["a man sings"]


def test_save_unknown_recording(store: Store):
    with pytest.raises(DatabaseError, match="claim it before saving"):
        store.save_result(12345, scenes("x"), "m")


def test_mark_failed(store: Store):
    store.mark_failed("/broken.ts", "VideoError: /broken.ts: no video stream")  # never claimed
    claim = store.claim("/a.ts", "h", "w")
    store.mark_failed("/a.ts", "x" * 20_000)
    rec = store.get_recording("/a.ts")
    assert rec.status == "failed" and rec.claimed_by is None and len(rec.error) == 10_000
    assert store.get_recording("/broken.ts").error.endswith("no video stream")
    assert store.stats().by_status == {"failed": 2}
    again = store.claim("/a.ts", "h", "w")  # failures are retried
    assert again is not None and again.recording_id == claim.recording_id
    store.save_result(again.recording_id, scenes("fine now"), "m")
    assert store.get_recording("/a.ts").error is None


def test_models_registered(store: Store):
    store.register_model("m")
    store.register_model(ModelInfo("m", sha256="0" * 64, meta={"frames": 30}))
    store.register_model("m")  # keeps what is known
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT name, sha256 FROM models")).all() == [("m", "0" * 64)]


def test_deleting_a_recording_cascades(store: Store):
    claim = store.claim("/a.ts", "h", "w")
    store.save_result(claim.recording_id, scenes("a man sings", "a dog runs"), "m")
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM recordings"))
    assert [count(store, t) for t in ("scenes", "captions", "tags", "scene_fts")] == [0, 0, 0, 0]


def test_sqlite_connect_settings(tmp_path):
    path = tmp_path / "new" / "folder" / "tv.db"
    engine = connect(f"sqlite:///{path}", busy_timeout=2.5)
    with engine.connect() as conn:
        pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert (pragma("journal_mode"), pragma("foreign_keys"), pragma("busy_timeout")) == ("wal", 1, 2500)
    assert path.is_file() and migrate.current(engine) in migrate.heads()
    engine.dispose()


def test_sqlite_in_memory():
    engine = connect("sqlite:///:memory:")
    store = Store(engine)
    claim = store.claim("/a.ts", "h", "w")
    store.save_result(claim.recording_id, scenes("a man sings"), "m")
    assert search(engine, "sing")[0].caption == "a man sings"
    engine.dispose()


def test_sqlite_second_writer_gets_clear_error(tmp_path):
    url = f"sqlite:///{tmp_path / 'tv.db'}"
    store = Store(connect(url, busy_timeout=0.2))
    claim = store.claim("/a.ts", "h", "w")
    store.save_result(claim.recording_id, scenes("a man sings"), "m")
    other = sqlite3.connect(tmp_path / "tv.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process is writing
    other.execute("UPDATE recordings SET error = 'x'")
    with pytest.raises(DatabaseError, match=r"tv\.db: database is locked by another writer .*PostgreSQL"):
        store.save_result(claim.recording_id, scenes("half", "written"), "m")
    assert [h.caption for h in search(store, "man")] == ["a man sings"]  # readers still work (WAL)
    other.execute("ROLLBACK")
    store.save_result(claim.recording_id, scenes("a dog runs"), "m")
    assert other.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    other.close()
    assert [s.caption for s in store.scenes_of("/a.ts")] == ["a dog runs"]
    store.engine.dispose()


def test_sqlite_writers_in_threads_serialize(tmp_path):
    store = Store(connect(f"sqlite:///{tmp_path / 'tv.db'}"))
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(5):
                claim = store.claim(f"/{i}/{j}.ts", "h", f"w{i}")
                store.save_result(claim.recording_id, scenes(f"scene {i} {j}", "more"), "m")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.stats().by_status == {"done": 15} and count(store, "scenes") == 30
    store.engine.dispose()


def test_connect_errors(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(DatabaseError, match="cannot create the database folder"):
        connect(f"sqlite:///{tmp_path / 'file' / 'sub' / 'tv.db'}")
    with pytest.raises(DatabaseError, match="unsupported database"):
        connect("mysql://localhost/x")
    (tmp_path / "notadb.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DatabaseError, match="notadb.db"):
        connect(f"sqlite:///{tmp_path / 'notadb.db'}")


@pytest.mark.postgres
def test_postgres_claim_skips_locked_row(fresh_pg_url):
    url = fresh_pg_url()
    store = Store(url.replace("postgresql+psycopg://", "postgresql://"))  # plain URL gets psycopg 3
    assert store.engine.dialect.driver == "psycopg"
    store.mark_failed("/a.ts", "earlier failure")
    with store.engine.connect() as other:
        other.execute(text("SELECT id FROM recordings WHERE path = '/a.ts' FOR UPDATE"))
        assert store.claim("/a.ts", "h", "worker-b") is None  # returns at once, no waiting
        other.rollback()
    assert store.claim("/a.ts", "h", "worker-b") is not None
    store.close()


@pytest.mark.postgres
def test_postgres_unreachable_is_clear():
    with pytest.raises(DatabaseError, match="127.0.0.1:1/"):
        connect("postgresql+psycopg://nobody@127.0.0.1:1/none")
