"""Alembic: one head, models equal migrations, round trips with data, concurrent first use."""

from __future__ import annotations

import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from tvcaption.db import migrate
from tvcaption.db.schema import Base, include_object
from tvcaption.db.search import search
from tvcaption.db.store import SceneRecord, Store, connect
from tvcaption.errors import DatabaseError

pytest_plugins = ["pg"]

TABLES = {"recordings", "scenes", "captions", "tags", "models"}


def test_one_head_and_a_linear_history():
    heads = migrate.heads()
    assert len(heads) == 1
    script = ScriptDirectory(str(migrate.migrations_dir()))
    revisions = list(script.walk_revisions())
    assert [r.revision for r in revisions][0] == heads[0]
    assert all(not r.is_merge_point for r in revisions) and revisions[-1].down_revision is None


def test_models_match_migrations(empty_db_url):
    engine = connect(empty_db_url)  # migrates to head
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": include_object, "compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_upgrade_from_nothing(empty_db_url):
    assert migrate.current(empty_db_url) is None
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
        SceneRecord(0.0, 3.0, 0, 75, "a man sings on a stage", -0.2, [("microphone", 0.9)]),
        SceneRecord(3.0, 6.0, 75, 150, "a dog runs in a park", -0.4, [("golden retriever", 0.8)]),
    ], "m")
    before = store.scenes_of("/a.ts")
    head = migrate.heads()[0]

    migrate.downgrade(engine, "0001")  # drops the search index, keeps the data
    assert migrate.current(engine) == "0001"
    assert store.scenes_of("/a.ts") == before
    assert "scene_fts" not in inspect(engine).get_table_names()
    with pytest.raises(DatabaseError, match="run tvcaption db upgrade"):
        search(engine, "man")

    migrate.upgrade(engine)  # rebuilds the index from the rows already there
    assert migrate.current(engine) == head
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
    with pytest.raises(DatabaseError, match="'ffff9999'.*knows revisions 0001, 0002, and base; .* newer"):
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
