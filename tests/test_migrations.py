"""Alembic: one head, models equal migrations, round trips with data, concurrent first use."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from tvcaption.db import migrate
from tvcaption.db.schema import Base, include_object
from tvcaption.db.search import search
from tvcaption.db.store import Store, connect
from tvcaption.errors import DatabaseError, MissingDatabaseError
from tvcaption.scene import Annotation, Scene

pytest_plugins = ["pg"]

TABLES = {"recordings", "scenes", "annotations", "models"}


def described(start: float, end: float, start_frame: int, end_frame: int, caption: str, score: float,
              tags=(), *more: Annotation) -> Scene:
    return Scene(start, end, start_frame, end_frame).with_annotations(
        [Annotation("caption", "caption", caption, score),
         *[Annotation("tags", "tag", label, p, field="labels") for label, p in tags], *more])


def rows(engine, sql: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql))]


def test_one_head_and_a_linear_history():
    heads = migrate.heads()
    assert len(heads) == 1
    script = ScriptDirectory(str(migrate.migrations_dir()))
    revisions = list(script.walk_revisions())
    assert [r.revision for r in revisions][0] == heads[0]
    assert all(not r.is_merge_point for r in revisions) and revisions[-1].down_revision is None
    assert migrate.HEAD == heads[0]  # is_current reads the version table against this constant


def test_is_current_agrees_with_alembic_at_every_revision(empty_db_url):
    """is_current (the version table read without Alembic) is True only at the head revision."""
    engine = connect(empty_db_url, migrate=False)
    try:
        assert migrate.is_current(engine) is False  # never migrated: no version table
        for revision in migrate.revisions():
            migrate.upgrade(engine, revision)
            assert migrate.current(engine) == revision
            assert migrate.is_current(engine) is (revision == migrate.heads()[0]), revision
    finally:
        engine.dispose()


def test_current_of_an_engine_that_must_not_create(tmp_path):
    """`tvcaption db current` opens with connect(url, create=False, migrate=False), then reads."""
    url = f"sqlite:///{tmp_path / 'tv.db'}"
    with pytest.raises(MissingDatabaseError):
        connect(url, create=False, migrate=False)
    assert list(tmp_path.iterdir()) == []
    engine = connect(url, migrate=False)  # an existing, never migrated file
    engine.connect().close()
    engine.dispose()
    engine = connect(url, create=False, migrate=False)
    assert migrate.current(engine) is None
    migrate.upgrade(engine, "0001")
    assert migrate.current(engine) == "0001"  # migrate=False: reading leaves the revision alone
    engine.dispose()


def test_migrations_are_found_in_the_package():
    """A wheel carries migrations/ as tvcaption.resources.migrations (pyproject.toml)."""
    folder = migrate.migrations_dir()
    assert (folder / "env.py").is_file() and (folder / "versions").is_dir()


def test_models_match_migrations(empty_db_url):
    engine = connect(empty_db_url)  # migrates to head
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": include_object, "compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_upgrade_from_nothing(empty_db_url):
    if empty_db_url.startswith("sqlite"):  # no file yet: reading the revision must not create one
        with pytest.raises(MissingDatabaseError, match="no database at .*tvcaption.db; index recordings first"):
            migrate.current(empty_db_url)
        assert not Path(empty_db_url.removeprefix("sqlite:///")).exists()
    else:
        assert migrate.current(empty_db_url) is None
    migrate.upgrade(empty_db_url)  # creates the file
    assert migrate.current(empty_db_url) == migrate.heads()[0]
    migrate.upgrade(empty_db_url)
    assert migrate.current(empty_db_url) == migrate.heads()[0]
    migrate.upgrade(empty_db_url)  # already at head: nothing to do
    engine = connect(empty_db_url, migrate=False)
    assert TABLES <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_downgrade_upgrade_round_trip_with_data(empty_db_url):
    engine = connect(empty_db_url)
    store = Store(engine)
    claim = store.claim("/a.ts", "h", "w", {"duration": 6.0})
    store.save_result(claim.recording_id, [
        described(0.0, 3.0, 0, 75, "a man sings on a stage", -0.2, [("microphone", 0.9)]),
        described(3.0, 6.0, 75, 150, "a dog runs in a park", -0.4, [("golden retriever", 0.8)]),
    ], "m")
    before = store.scenes_of("/a.ts")
    head = migrate.heads()[0]

    migrate.downgrade(engine, "0001")  # drops the search index, keeps the data
    assert migrate.current(engine) == "0001"
    assert rows(engine, "SELECT scene_id, text, model, score FROM captions ORDER BY id") == [
        (1, "a man sings on a stage", "m", -0.2), (2, "a dog runs in a park", "m", -0.4)]
    assert rows(engine, "SELECT scene_id, label, score FROM tags ORDER BY id") == [
        (1, "microphone", 0.9), (2, "golden retriever", 0.8)]
    assert "scene_fts" not in inspect(engine).get_table_names()
    with pytest.raises(DatabaseError, match="run tvcaption db upgrade"):
        search(engine, "man")

    migrate.upgrade(engine)  # rebuilds the index from the rows already there
    assert migrate.current(engine) == head
    after = store.scenes_of("/a.ts")
    assert after == before and [s.annotations for s in after] == [s.annotations for s in before]
    assert [h.caption for h in search(engine, "singing man")] == ["a man sings on a stage"]
    assert [h.caption for h in search(engine, "retriever")] == ["a dog runs in a park"]

    migrate.downgrade(engine, "base")
    assert migrate.current(engine) is None
    assert not TABLES & set(inspect(engine).get_table_names())
    migrate.upgrade(engine, head)
    assert Store(engine).stats().recordings == 0
    claim = Store(engine).claim("/a.ts", "h", "w")  # usable again
    assert claim is not None
    engine.dispose()


def test_first_use_from_several_threads(empty_db_url):
    """Workers that start together: one migrates, the others wait for it and find head."""
    errors: list[BaseException] = []

    def first_use() -> None:
        try:
            connect(empty_db_url).dispose()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=first_use) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert migrate.current(empty_db_url) == migrate.heads()[0]


def test_unknown_revision_is_a_clear_error(empty_db_url):
    engine = connect(empty_db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff9999'"))
    engine.dispose()
    with pytest.raises(DatabaseError, match="'ffff9999'.*knows revisions 0001, 0002, 0003, 0004, 0005, 0006, 0007, 0008, 0009, 0010, and base; .* newer"):
        connect(empty_db_url)
    with pytest.raises(DatabaseError, match="'nonsense'.*knows revisions 0001"):
        migrate.downgrade(empty_db_url, "nonsense")


def test_offline_sql_renders(capsys):
    """``alembic upgrade --sql`` works (for DBAs who apply migrations by hand)."""
    from alembic import command

    for url in ("sqlite://", "postgresql+psycopg://u@h/db"):
        config = migrate._config()
        config.set_main_option("sqlalchemy.url", url)
        command.upgrade(config, "head", sql=True)
        out = capsys.readouterr().out
        assert "CREATE TABLE recordings" in out and "scene_fts" in out


# --- 0003: captions and tags become annotations, and back ------------------------------------------

OLD_SCENES = [  # (caption, [(tag, score)] in the order the rows were inserted)
    ("a man sings on a stage", [("microphone", 0.9), ("stage", 0.3)]),
    ("a dog runs in a park", [("park bench", 0.2), ("golden retriever", 0.7)]),  # not by score
    ("an empty street at night", []),
]


def fill_0002(engine) -> None:
    """Rows as tvcaption wrote them at revision 0002 (one recording, captions and tags tables)."""
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO recordings (id, path, status, model) VALUES (1, '/old.ts', 'done', 'm-old')"))
        for i, (caption, tags) in enumerate(OLD_SCENES):
            conn.execute(text('INSERT INTO scenes (id, recording_id, "index", start, "end", start_frame, end_frame) '
                              "VALUES (:id, 1, :i, :s, :e, :sf, :ef)"),
                         dict(id=i + 1, i=i, s=2.0 * i, e=2.0 * i + 2.0, sf=50 * i, ef=50 * i + 50))
            conn.execute(text("INSERT INTO captions (scene_id, text, model, score) VALUES (:id, :t, 'm-old', -0.5)"),
                         dict(id=i + 1, t=caption))
            for label, score in tags:
                conn.execute(text("INSERT INTO tags (scene_id, label, score) VALUES (:id, :l, :s)"),
                             dict(id=i + 1, l=label, s=score))


def state_0002(engine) -> dict:
    """What revision 0002 holds: captions, tags by scene, and the search index's rows."""
    key = "rowid" if engine.dialect.name == "sqlite" else "scene_id"
    fts = rows(engine, f"SELECT {key}, caption, tags FROM scene_fts ORDER BY {key}")
    return {"captions": rows(engine, "SELECT scene_id, text, model, score FROM captions ORDER BY scene_id, id"),
            "tags": sorted(rows(engine, "SELECT scene_id, label, score FROM tags")),
            # tag words as a set: 0002 indexed tags in insertion order, 0003 gives them back by score
            "fts": [(scene, caption, sorted((tags or "").split())) for scene, caption, tags in fts]}


def search_0002(engine, word: str) -> list[int]:
    """Scene ids the 0002 index finds for one word (its own triggers and columns)."""
    if engine.dialect.name == "sqlite":
        sql = f"SELECT rowid FROM scene_fts WHERE scene_fts MATCH '\"{word}\"' ORDER BY bm25(scene_fts, 1.0, 0.5)"
    else:
        sql = (f"SELECT scene_id FROM scene_fts WHERE document @@ plainto_tsquery('english', '{word}') "
               f"ORDER BY ts_rank(document, plainto_tsquery('english', '{word}'), 1) DESC")
    return [row[0] for row in rows(engine, sql)]


def test_captions_and_tags_become_annotations_and_back(empty_db_url):
    """0002 -> 0003 -> 0002 -> 0003 with data: nothing of a caption or tag is lost either way."""
    migrate.upgrade(empty_db_url, "0002")
    engine = connect(empty_db_url, migrate=False)
    fill_0002(engine)
    old = state_0002(engine)
    assert search_0002(engine, "retriever") == [2]

    migrate.upgrade(engine, "0003")
    assert not {"captions", "tags"} & set(inspect(engine).get_table_names())
    store = Store(engine)
    scenes = store.scenes_of("/old.ts")
    assert [s.index for s in scenes] == [0, 1, 2] and scenes[1].start == 2.0 and scenes[2].end_frame == 150
    assert [s.annotations for s in scenes] == [
        (Annotation("caption", "caption", "a man sings on a stage", -0.5),
         Annotation("tags", "tag", "microphone", 0.9, field="labels"),
         Annotation("tags", "tag", "stage", 0.3, field="labels")),
        (Annotation("caption", "caption", "a dog runs in a park", -0.5),  # tags by score, most probable first
         Annotation("tags", "tag", "golden retriever", 0.7, field="labels"),
         Annotation("tags", "tag", "park bench", 0.2, field="labels")),
        (Annotation("caption", "caption", "an empty street at night", -0.5),)]
    assert rows(engine, "SELECT position FROM annotations ORDER BY scene_id, position") == [
        (0,), (1,), (2,), (0,), (1,), (2,), (0,)]
    assert [h.caption for h in search(engine, "stage")] == ["a man sings on a stage"]
    assert [h.tags for h in search(engine, "retriever")] == [("golden retriever", "park bench")]
    assert [h.caption for h in search(engine, "street night")] == ["an empty street at night"]

    migrate.downgrade(engine, "0002")
    assert not {"annotations"} & set(inspect(engine).get_table_names())
    assert state_0002(engine) == old
    assert search_0002(engine, "retriever") == [2] and search_0002(engine, "stage") == [1]
    with engine.begin() as conn:  # 0002's triggers are back: a new caption is found at once
        conn.execute(text("INSERT INTO captions (scene_id, text, model, score) VALUES (3, 'a quiet owl', 'm', 0)"))
    assert search_0002(engine, "owl") == [3]
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM captions WHERE text = 'a quiet owl'"))
    assert search_0002(engine, "owl") == []

    migrate.upgrade(engine, "0003")
    again = store.scenes_of("/old.ts")
    assert again == scenes and [s.annotations for s in again] == [s.annotations for s in scenes]
    assert [h.caption for h in search(engine, "retriever")] == ["a dog runs in a park"]
    engine.dispose()


def test_annotations_of_any_analyser_through_a_round_trip(empty_db_url):
    """At head every analyser's output is kept; 0002 has room for captions and tags only."""
    engine = connect(empty_db_url)
    store = Store(engine)
    claim = store.claim("/new.ts", "h", "w")
    ocr = Annotation("ocr", "text", "FLOOD WARNING", 0.8, data={"box": [1, 2, 30, 40]})
    vector = Annotation("embed", "embedding", "quokka", None, field=None, data={"vector": [0.5, -0.5]})
    store.save_result(claim, [described(0.0, 2.0, 0, 50, "a reporter by a river", -0.1, [("umbrella", 0.6)],
                                        ocr, vector)], "m-new")
    assert [h.caption for h in search(engine, "flood")] == ["a reporter by a river"]
    assert search(engine, "quokka") == []  # stored, not searched
    (hit,) = search(engine, "umbrella warning")
    assert hit.annotations[-2:] == (ocr, vector)

    migrate.downgrade(engine, "0002")
    assert rows(engine, "SELECT scene_id, text, model, score FROM captions") == [
        (1, "a reporter by a river", "m-new", -0.1)]
    assert rows(engine, "SELECT scene_id, label, score FROM tags") == [(1, "umbrella", 0.6)]
    assert search_0002(engine, "umbrella") == [1] and search_0002(engine, "flood") == []

    migrate.upgrade(engine)
    (scene,) = store.scenes_of("/new.ts")
    assert scene.annotations == (Annotation("caption", "caption", "a reporter by a river", -0.1),
                                 Annotation("tags", "tag", "umbrella", 0.6, field="labels"))
    engine.dispose()


# --------------------------------------------------------------------------------------------
# A new SQLite database from the schema's snapshot (tvcaption/db/sqlite_snapshot.py)
# --------------------------------------------------------------------------------------------
REPO = Path(__file__).resolve().parents[1]


def _sqlite_schema(path: Path) -> dict:
    import sqlite3

    with sqlite3.connect(path) as conn:
        found = {"objects": conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").fetchall(),
                 "revision": conn.execute("SELECT version_num FROM alembic_version").fetchall(),
                 "fts5": conn.execute("SELECT * FROM scene_fts_config").fetchall(),
                 "counters": dict(conn.execute("SELECT name, version FROM search_versions").fetchall())}
    conn.close()
    return found


def test_the_shipped_sqlite_snapshot_is_what_the_migrations_make():
    """Adding a migration without running scripts/make_sqlite_snapshot.py fails here."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(REPO / "scripts" / "make_sqlite_snapshot.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_new_sqlite_database_from_the_snapshot_equals_a_migrated_one(tmp_path):
    from tvcaption.db.engine import open_engine

    made, migrated = tmp_path / "made.db", tmp_path / "migrated.db"
    connect(f"sqlite:///{made}").dispose()  # a new file: from the snapshot
    engine = open_engine(f"sqlite:///{migrated}", create=True)
    migrate.upgrade(engine, snapshot=False)  # every migration through Alembic
    engine.dispose()
    a, b = _sqlite_schema(made), _sqlite_schema(migrated)
    assert a["objects"] == b["objects"] and len(a["objects"]) > 20
    assert a["revision"] == b["revision"] == [(migrate.HEAD,)]
    assert a["fts5"] == b["fts5"]
    assert set(a["counters"]) == set(b["counters"]) == {"text", "vectors"}
    again = tmp_path / "again.db"  # counters start at random: a new file never meets the old one's caches
    connect(f"sqlite:///{again}").dispose()
    assert _sqlite_schema(again)["counters"] != a["counters"]
    # it is an ordinary database at head: it indexes, searches, and Alembic takes it down and up
    engine = connect(f"sqlite:///{made}")
    store = Store(engine)
    claim = store.claim("/a.ts", "h", "w")
    store.save_result(claim, [described(0.0, 2.0, 0, 50, "a red moped on a street", -0.3)], "toy")
    assert [h.caption for h in search(engine, "moped")] == ["a red moped on a street"]
    migrate.downgrade(engine, "base")
    assert migrate.current(engine) is None
    migrate.upgrade(engine)  # tables exist no more, but this is not a new file: all the same, head
    assert migrate.current(engine) == migrate.HEAD
    engine.dispose()


def test_a_new_sqlite_database_does_not_import_alembic(tmp_path):
    """Alembic's import was ~0.3 s of the first command into a new database."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'new.db'}"
    code = ("import sys; from tvcaption.db.store import connect; "
            f"connect({url!r}).dispose(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert _sqlite_schema(tmp_path / "new.db")["revision"] == [(migrate.HEAD,)]
