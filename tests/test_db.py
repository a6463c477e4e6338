"""Storage on both backends: claims, atomic saves, failures, locking, cascades."""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from tvcaption.db import migrate
from tvcaption.db.search import search
from tvcaption.db.store import ModelInfo, Store, connect
from tvcaption.errors import DatabaseError, MissingDatabaseError
from tvcaption.scene import Annotation, Scene

pytest_plugins = ["pg"]

PROBE = {"duration": 12.5, "fps": 25.0, "width": 720, "height": 576, "codec": "mpeg2video"}


def scene(start: float, end: float, start_frame: int, end_frame: int, caption: str, score: float | None = None,
          tags=()) -> Scene:
    """A scene as the caption and tags analysers describe it."""
    return Scene(start, end, start_frame, end_frame).with_annotations(
        [Annotation("caption", "caption", caption, score),
         *[Annotation("tags", "tag", label, p, field="labels") for label, p in tags]])


def scenes(*captions: str) -> list[Scene]:
    return [scene(2.0 * i, 2.0 * i + 2.0, 50 * i, 50 * i + 50, c, -0.5, [(f"label{i}", 0.9), ("common", 0.1)])
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
    assert [s.index for s in stored] == [0, 1] and [s.score for s in stored] == [-0.5, -0.5]
    assert stored[1].start == 2.0 and stored[1].end == 4.0 and stored[1].end_frame == 100
    assert stored[0].tags == ("label0", "common") and stored[0].tag_scores == (0.9, 0.1)
    assert [s.annotations for s in stored] == [s.annotations for s in scenes("a man sings on a stage", "a dog runs")]
    again = store.scenes_of(claim.recording_id)
    assert again == stored and [s.annotations for s in again] == [s.annotations for s in stored]
    assert store.scenes_of("/nowhere.ts") == []

    stats = store.stats()
    assert (stats.recordings, stats.scenes, stats.captions, stats.tags, stats.models) == (1, 2, 2, 4, 1)
    assert stats.annotations == {"caption": 2, "tag": 4}
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
    assert (count(store, "scenes"), count(store, "annotations"), count(store, "scene_fts")) == (1, 3, 1)
    assert search(store, "cats") == []
    assert [h.caption for h in search(store, "dogs")] == ["a new caption about dogs"]
    assert store.save_result(claim.recording_id, [], "m") == 0
    assert store.scenes_of("/a.ts") == [] and search(store, "dogs") == []


def test_every_analysers_annotations_are_kept_in_their_order(store: Store):
    """The store knows no analyser: whatever they return comes back as given, in the same order."""
    ocr = Annotation("ocr", "text", "BREAKING: river floods", 0.75, data={"box": [10, 20, 300, 40], "lang": "en"})
    vector = Annotation("embed", "embedding", "zebracorn", None, field=None, data={"vector": [0.25, -1.0]})
    given = [Scene(0.0, 2.0, 0, 50).with_annotations(
                 [Annotation("tags", "tag", "umbrella", 0.6, field="labels"), ocr,
                  Annotation("caption", "caption", "a reporter stands by a river", -0.4), vector]),
             Scene(2.0, 4.0, 50, 100)]  # a scene nothing was said of
    claim = store.claim("/a.ts", "h", "w")
    assert store.save_result(claim, given, "m") == 2
    stored = store.scenes_of("/a.ts")
    assert [s.annotations for s in stored] == [s.annotations for s in given]
    assert stored[0].caption == "a reporter stands by a river" and stored[0].tags == ("umbrella",)
    assert stored[1].annotations == () and stored[1].index == 1 and stored[1].caption == ""
    assert store.stats().annotations == {"caption": 1, "tag": 1, "text": 1, "embedding": 1}

    (hit,) = search(store, "floods")  # another analyser's text is searched like a caption
    assert hit.annotations == given[0].annotations and hit.caption == "a reporter stands by a river"
    assert [h.start for h in search(store, "breaking umbrella reporter")] == [0.0]  # words from three analysers
    assert search(store, "zebracorn") == []  # field None: stored, not searched
    assert count(store, "scene_fts") == 1


def test_search_index_follows_every_change_to_annotations(store: Store):
    """Triggers keep the index in step with rows however they change, inside the transaction."""
    claim = store.claim("/a.ts", "h", "w")
    store.save_result(claim, scenes("a man sings", "a dog runs"), "m")
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE annotations SET text = 'a cat sleeps' WHERE text = 'a dog runs'"))
    assert search(store, "dog") == [] and [h.caption for h in search(store, "cat")] == ["a cat sleeps"]
    with store.engine.begin() as conn:  # no longer searched: the scene keeps its labels in the index
        conn.execute(text("UPDATE annotations SET field = NULL WHERE text = 'a cat sleeps'"))
    assert search(store, "cat") == [] and [h.tags for h in search(store, "label1")] == [("label1", "common")]
    with store.engine.begin() as conn:  # nothing searched is left of the scene: its index row goes
        conn.execute(text("DELETE FROM annotations WHERE kind = 'tag' AND scene_id = "
                          "(SELECT scene_id FROM annotations WHERE text = 'a cat sleeps')"))
    assert search(store, "label1") == [] and count(store, "scene_fts") == 1
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE annotations SET field = 'labels' WHERE text = 'a cat sleeps'"))
    assert [h.caption for h in search(store, "cat")] == ["a cat sleeps"] and count(store, "scene_fts") == 2
    with pytest.raises(IntegrityError):  # only the index's fields, or NULL
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE annotations SET field = 'title'"))


def test_save_result_statements_do_not_grow_with_scenes(store: Store):
    """One executemany per table: the statements a save sends are as many for 40 scenes as for 2."""
    from sqlalchemy import event

    sent: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        sent.append(statement.split()[0].upper())

    claim = store.claim("/a.ts", "h", "w")
    event.listen(store.engine, "before_cursor_execute", record)
    try:
        store.save_result(claim, scenes("a", "b"), "m")
        few = list(sent)
        sent.clear()
        store.save_result(claim.recording_id, scenes(*(f"scene {i}" for i in range(40))), "m")
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    # mark done, the model, reviewers' corrections kept, old scenes out, new scenes, their ids, their
    # annotations, the old meaning vectors out (none new here; SQLite adds its BEGIN)
    assert [s for s in few if s != "BEGIN"] == ["UPDATE", "INSERT", "SELECT", "DELETE", "INSERT", "SELECT", "INSERT",
                                                "DELETE"]
    assert sent == few
    assert len(store.scenes_of("/a.ts")) == 40


def test_failed_save_leaves_old_state(store: Store):
    claim = store.claim("/a.ts", "h", "w")
    store.save_result(claim.recording_id, scenes("a man sings", "a crowd cheers"), "m")
    before = store.scenes_of("/a.ts")
    claim = store.claim("/a.ts", "h", "w", reindex=True)
    assert store.get_recording("/a.ts").status == "processing"
    bad = scenes("a woman dances", "a cat sleeps")
    bad.append(scene(4.0, 6.0, 100, 150, "last", tags=[(None, 0.5)]))  # NOT NULL fails in the last INSERT
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
    assert [count(store, t) for t in ("scenes", "annotations", "scene_fts")] == [0, 0, 0]


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


# --- connect(create=False): reading never creates a database ---------------------------------------

def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and "Traceback" not in message, message
    return message


def test_reading_a_missing_sqlite_file_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for url, shown in ((f"sqlite:///{tmp_path / 'nowhere' / 'tv.db'}", tmp_path / "nowhere" / "tv.db"),
                       ("sqlite:///typo.db", tmp_path / "typo.db")):
        for kwargs in ({}, {"migrate": False}):
            with pytest.raises(MissingDatabaseError) as exc:
                connect(url, create=False, **kwargs)
            assert one_line(exc) == (f"no database at {shown}; index recordings first "
                                     "(tvcaption index FOLDER) or pass --db")
        with pytest.raises(MissingDatabaseError):
            migrate.current(url)  # what `tvcaption db current` reads
        with pytest.raises(MissingDatabaseError):
            migrate.downgrade(url, "base")
    assert list(tmp_path.iterdir()) == []  # no file, no folder, no -wal


def test_reading_an_empty_or_foreign_sqlite_file_is_refused(tmp_path):
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(DatabaseError, match=r"empty\.db: the database is empty .*tvcaption index") as exc:
        connect(f"sqlite:///{empty}", create=False)
    one_line(exc)
    assert empty.stat().st_size == 0  # neither migrated nor given a header
    engine = connect(f"sqlite:///{empty}", create=False, migrate=False)  # db current: "never migrated"
    assert migrate.current(engine) is None
    engine.dispose()
    assert empty.stat().st_size == 0

    blank = tmp_path / "blank.db"
    sqlite3.connect(blank).execute("PRAGMA user_version = 1").connection.close()  # a database, no tables
    with pytest.raises(DatabaseError, match="the database is empty"):
        connect(f"sqlite:///{blank}", create=False)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY)")
    con.close()
    with pytest.raises(DatabaseError, match=r"other\.db: not a tvcaption database") as exc:
        connect(f"sqlite:///{other}", create=False)
    one_line(exc)
    with sqlite3.connect(other) as con:  # untouched
        assert [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["photos"]
    con.close()


def test_reading_a_database_downgraded_to_base_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'tv.db'}"
    migrate.upgrade(url)
    migrate.downgrade(url, "base")  # alembic_version is left behind, empty
    with pytest.raises(DatabaseError, match="the database is empty"):
        connect(url, create=False)
    assert migrate.current(url) is None


def test_reading_an_older_revision_migrates_it_forward(tmp_path):
    url = f"sqlite:///{tmp_path / 'tv.db'}"
    migrate.upgrade(url, "0001")
    engine = connect(url, create=False)
    assert migrate.current(engine) == migrate.heads()[0]
    assert search(engine, "anything") == []
    engine.dispose()


def test_reading_an_existing_database(db_url: str):
    with Store(db_url) as store:
        claim = store.claim("/a.ts", "h", "w")
        store.save_result(claim, scenes("a man sings"), "m")
    engine = connect(db_url, create=False)
    assert [h.caption for h in search(engine, "man")] == ["a man sings"]
    assert migrate.current(engine) == migrate.heads()[0]
    engine.dispose()
    assert migrate.current(db_url) == migrate.heads()[0]


@pytest.mark.postgres
def test_postgres_reading_a_missing_or_empty_database(fresh_pg_url):
    from sqlalchemy.engine import make_url

    url = make_url(fresh_pg_url()).set(password="s3cret")
    missing = url.set(database="tvcaption_no_such_database")
    for kwargs in ({}, {"migrate": False}):
        with pytest.raises(DatabaseError, match="tvcaption_no_such_database.*cannot open the database") as exc:
            connect(missing.render_as_string(hide_password=False), create=False, **kwargs)
        assert "s3cret" not in one_line(exc) and "***" in str(exc.value)
    with pytest.raises(DatabaseError, match=r"127\.0\.0\.1:1/none: cannot open the database") as exc:
        connect("postgresql+psycopg://nobody@127.0.0.1:1/none", create=False)
    one_line(exc)
    empty = fresh_pg_url(migrated=False)
    with pytest.raises(DatabaseError, match="the database is empty") as exc:
        connect(empty, create=False)
    one_line(exc)
    assert migrate.current(empty) is None  # still not migrated


# --- damaged SQLite files: one line on every path ------------------------------------------------------

def _damage(path, *, header: bool) -> None:
    """Overwrite bytes in the middle of the file's pages: with ``header``, the file header too (then
    SQLite says "file is not a database"); else every page of the tables, their indexes and the
    search index, keeping the schema and alembic_version so that the file still opens ("database
    disk image is malformed" on the first read of a table)."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    keep = {"sqlite_schema", "sqlite_master", "alembic_version", "sqlite_autoindex_alembic_version_1"}
    pages = sorted({n for name, n in con.execute("SELECT name, pageno FROM dbstat") if name not in keep})
    con.close()
    assert len(pages) > 10
    with open(path, "r+b") as fh:
        if header:
            fh.write(b"\x00" * 100)
        for page in pages:
            start = (page - 1) * page_size
            fh.seek(start)
            fh.write(b"\xff" * 12)  # the b-tree page header
            fh.seek(start + page_size // 2)
            fh.write(b"\xa5" * 64)


def _filled(path):
    """A real indexed SQLite file with a few recordings, and an open claim on one more."""
    with Store(connect(f"sqlite:///{path}")) as store:
        for i in range(12):
            claim = store.claim(f"/archive/{i}.ts", f"h{i}", "w", PROBE)
            store.save_result(claim, scenes(*(f"a man sings song {i} part {j}" for j in range(15))), "m")
        pending = store.claim("/archive/pending.ts", "hp", "w", PROBE)
        store.engine.dispose()
    return pending


@pytest.mark.parametrize("header", [False, True], ids=["malformed", "not-a-database"])
def test_damaged_sqlite_file_gives_one_line_everywhere(tmp_path, header):
    from tvcaption.export import export_recording

    path = tmp_path / "tv.db"
    pending = _filled(path)
    _damage(path, header=header)
    # the reason is SQLite's: "database disk image is malformed", "file is not a database", or what
    # FTS5 says of its damaged index ("vtable constructor failed: scene_fts")
    expected = re.compile(re.escape(f"{path}: the database file is damaged (") + r"[^()\n]+" +
                          re.escape("); restore it from a backup or index into a new one with --db"))
    url = f"sqlite:///{path}"

    def check(action) -> None:
        with pytest.raises(DatabaseError) as exc:
            action()
        assert expected.fullmatch(one_line(exc)), str(exc.value)
        if header:
            assert "(file is not a database)" in str(exc.value)

    if header:  # nothing can be read: opening already says so
        check(lambda: migrate.current(url))  # db current
        check(lambda: connect(url))
        check(lambda: connect(url, create=False))
        check(lambda: connect(url, create=False, migrate=False))
    else:
        assert migrate.current(url) == migrate.heads()[0]
    engine = connect(url, migrate=not header)  # a "malformed" file still opens: its schema is intact
    reader = engine if header else connect(url, create=False)  # what search and export open
    store = Store(engine)
    check(lambda: search(reader, "man"))  # search
    check(lambda: search(reader, "man", recording="/archive/1.ts"))
    check(lambda: store.get_recording("/archive/1.ts"))  # export, status
    check(lambda: store.find_recording("/archive/1.ts"))
    check(lambda: store.scenes_of("/archive/1.ts"))
    check(lambda: store.recordings(status="done"))
    check(lambda: store.stats())
    check(lambda: export_recording(store, "/archive/1.ts", "srt", tmp_path))
    check(lambda: store.claim("/archive/new.ts", "hn", "w", PROBE))  # index
    check(lambda: store.claim("/archive/1.ts", "h1", "w", PROBE, reindex=True))
    check(lambda: store.save_result(pending, scenes("a dog runs"), "m"))
    check(lambda: store.mark_failed("/archive/new.ts", "boom"))
    check(lambda: store.register_model("m2"))
    check(lambda: store.release(pending.recording_id))
    check(lambda: store.renew(pending))
    engine.dispose()
    reader.dispose()


# --- recordings named the way users name them ------------------------------------------------------

def test_find_recording_by_any_spelling(store: Store, tmp_path, monkeypatch):
    media = tmp_path / "media"
    (media / "odd").mkdir(parents=True)
    real = media / "odd" / "bikes.mp4"
    real.write_bytes(b"not really a video")
    (tmp_path / "link.mp4").symlink_to(real)
    (tmp_path / "folder-link").symlink_to(media)
    stored = os.path.realpath(real)
    claim = store.claim(stored, "h", "w")
    store.save_result(claim, scenes("a man rides a bike"), "m")

    monkeypatch.chdir(tmp_path)
    for spelling in (stored, real, "media/odd/bikes.mp4", "./media/odd/../odd/bikes.mp4", "link.mp4",
                     tmp_path / "link.mp4", "folder-link/odd/bikes.mp4", f"{media}/odd/./bikes.mp4"):
        found = store.find_recording(spelling)
        assert found is not None and found.path == stored, spelling
        assert [h.caption for h in search(store, "bike", recording=spelling)] == ["a man rides a bike"], spelling
    for unknown in ("media/odd/other.mp4", "bikes.mp4", "", "nul\x00byte", tmp_path / "missing" / "x.ts"):
        assert store.find_recording(unknown) is None
        assert search(store, "bike", recording=unknown) == []
    assert store.get_recording("media/odd/bikes.mp4") is None  # get_recording stays exact


def test_find_recording_in_an_older_database(store: Store, tmp_path, monkeypatch):
    """Older versions stored Path.absolute(): '..' and symlinks kept as written."""
    media = tmp_path / "media"
    media.mkdir()
    (media / "real.ts").write_bytes(b"x")
    (media / "alias.ts").symlink_to(media / "real.ts")
    monkeypatch.chdir(tmp_path)
    old_dots = str(Path("media/../media/real.ts").absolute())
    old_link = str(media / "alias.ts")
    for path in (old_dots, old_link):
        claim = store.claim(path, "h", "w")
        store.save_result(claim, scenes("an old caption"), "m")
    assert store.find_recording("media/../media/real.ts").path == old_dots  # as stored, absolute
    assert store.find_recording(media / "alias.ts").path == old_link  # the symlink's own path
    store.rename_recording(old_dots, "/moved/away.ts")
    found = store.find_recording(media / "real.ts")  # only a stored symlink resolves to it now
    assert found is not None and found.path == old_link

    # the indexer moves an old row to the resolved path when it meets the file again
    assert store.rename_recording(old_link, str(media / "real.ts")) is True
    assert store.find_recording("media/alias.ts").path == str(media / "real.ts")
    assert store.rename_recording("/nowhere.ts", "/elsewhere.ts") is False
    assert store.rename_recording("/moved/away.ts", str(media / "real.ts")) is False  # taken: nothing changes
    assert store.get_recording("/moved/away.ts") is not None


def test_save_result_records_the_file_as_captioned(store: Store):
    """A file that grew while it was captioned is stored with its final hash, size and duration."""
    claim = store.claim("/growing.ts", "hash-before", "w", {**PROBE, "file_size": 100})
    grown = {**PROBE, "duration": 30.0, "file_size": 250}
    store.save_result(claim, scenes("a man sings"), "m", content_hash="hash-after", probe=grown)
    rec = store.get_recording("/growing.ts")
    assert (rec.status, rec.content_hash, rec.duration, rec.probe) == ("done", "hash-after", 30.0, grown)
    assert store.claim("/growing.ts", "hash-after", "w", grown, model="m") is None  # up to date
    claim = store.claim("/growing.ts", "hash-3", "w", PROBE)
    store.save_result(claim, scenes("a man sings"), "m")  # nothing given: the claim's values stay
    rec = store.get_recording("/growing.ts")
    assert (rec.content_hash, rec.duration, rec.probe) == ("hash-3", 12.5, PROBE)
