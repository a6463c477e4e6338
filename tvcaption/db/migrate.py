"""Alembic wrapped in four functions (what ``tvcaption db upgrade`` and ``connect()`` call).

Each takes a database URL or an open :class:`~sqlalchemy.engine.Engine`. An in-memory SQLite
database only exists inside its engine, so pass the engine there. Only :func:`upgrade` creates a
database that does not exist; :func:`current` and :func:`downgrade` given the URL of a missing
SQLite file raise :class:`~tvcaption.errors.MissingDatabaseError` and leave no file behind. The
Alembic environment is ``tvcaption.resources.migrations`` (the top-level ``migrations/`` folder,
shipped in the wheel as package data), or ``migrations/`` next to the package in a checkout.

Engines come from :func:`tvcaption.db.engine.open_engine` (this module imports nothing else of
the store), and a migration writes through :func:`~tvcaption.db.engine.begin_write`: on SQLite
that is ``BEGIN IMMEDIATE``, and DDL inside a transaction, only on an engine that
``open_engine`` (or ``tvcaption.db.store.connect``) made. Pass no other SQLite engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from tvcaption.db.engine import begin_write, damage, damaged_error, first_line, open_engine
from tvcaption.errors import DatabaseError, TvcaptionError

# Any constant will do: PostgreSQL workers starting together take this lock, so only one of
# them migrates and the others then find the schema at head.
_PG_MIGRATION_LOCK = 7_468_657_220  # "tvcaption"-ish, within bigint


def migrations_dir() -> Path:
    try:  # the installed package's copy (a wheel), or the checkout's folder (an editable install)
        from tvcaption.resources import migrations_dir as shipped

        return shipped()
    except (ImportError, TvcaptionError):
        pass
    import tvcaption

    path = Path(tvcaption.__file__).resolve().parents[1] / "migrations"
    if not (path / "env.py").is_file():
        raise DatabaseError(
            f"{path}: Alembic migrations not found; install tvcaption from its source checkout "
            "(pip install -e .) so that migrations/ sits next to the package"
        )
    return path


def _config(connection: Connection | None = None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _label(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _failure(engine: Engine, exc: BaseException, what: str) -> DatabaseError:
    """One line for a database error: a damaged SQLite file says so, anything else ``what``: its first line."""
    reason = damage(exc)
    if reason is not None:
        return damaged_error(engine, reason)
    return DatabaseError(f"{_label(engine)}: {what}: {first_line(exc)}")


@contextmanager
def _engine(url_or_engine: str | Engine, create: bool = False) -> Iterator[Engine]:
    """The engine given, or one for the URL (disposed afterwards). It creates a missing SQLite
    file only with ``create``; without, a missing file is a MissingDatabaseError."""
    if isinstance(url_or_engine, Engine):
        yield url_or_engine
        return
    engine = open_engine(url_or_engine, create=create)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def _migrating(url_or_engine: str | Engine, create: bool) -> Iterator[Connection]:
    """A connection in a transaction that holds the database's migration lock."""
    from alembic.util import CommandError

    with _engine(url_or_engine, create) as engine:
        try:
            # SQLite: BEGIN IMMEDIATE (begin_write) takes the write lock before Alembic reads the
            # current revision, so two processes cannot both run the same migration.
            with begin_write(engine) as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
                yield conn
        except CommandError as exc:
            raise DatabaseError(f"{_label(engine)}: {exc} (this tvcaption knows revisions "
                                f"{', '.join(revisions())}, and base; a database migrated by a newer "
                                "tvcaption needs that version)") from None
        except SQLAlchemyError as exc:
            if isinstance(exc.__cause__, DatabaseError):
                raise exc.__cause__ from None
            raise _failure(engine, exc, "migration failed") from exc


def upgrade(url: str | Engine, rev: str = "head", snapshot: bool = True) -> None:
    """Migrate the database up to ``rev`` (default: the newest revision). A new SQLite database
    (no table at all) going to the newest revision is made from the schema's snapshot without
    Alembic (:mod:`tvcaption.db.sqlite_snapshot`), unless ``snapshot`` is false."""
    if snapshot and rev in ("head", HEAD) and _create_from_snapshot(url):
        return
    from alembic import command

    with _migrating(url, create=True) as conn:
        command.upgrade(_config(conn), rev)


def _create_from_snapshot(url: str | Engine) -> bool:
    """Make an empty SQLite database at HEAD from the shipped snapshot; False (nothing done) for
    any other database, or when the snapshot is not at HEAD."""
    from tvcaption.db import sqlite_snapshot

    with _engine(url, create=True) as engine:
        if engine.dialect.name != "sqlite":
            return False
        made = sqlite_snapshot.statements(HEAD)
        if made is None:
            return False
        try:
            with begin_write(engine) as conn:  # BEGIN IMMEDIATE: one process makes it, the others then see it
                if conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar():
                    return False
                for statement in made:
                    conn.exec_driver_sql(statement)
        except SQLAlchemyError as exc:
            raise _failure(engine, exc, "cannot create the database") from exc
    return True


def downgrade(url: str | Engine, rev: str) -> None:
    """Migrate the database down to ``rev`` (``"base"`` drops every table)."""
    from alembic import command

    with _migrating(url, create=False) as conn:
        command.downgrade(_config(conn), rev)


def current(url: str | Engine) -> str | None:
    """The database's revision, or None for a database that was never migrated.

    Reads only: given a URL, a missing SQLite file raises MissingDatabaseError instead of being
    created (as does ``connect(url, create=False)`` for the engine one passes in).
    """
    from alembic.runtime.migration import MigrationContext

    with _engine(url) as engine:
        try:
            with engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()
        except SQLAlchemyError as exc:
            raise _failure(engine, exc, "cannot read the schema revision") from exc


def heads() -> tuple[str, ...]:
    """The newest revision(s) in ``migrations/``; a healthy tree has exactly one."""
    from alembic.script import ScriptDirectory

    return tuple(ScriptDirectory.from_config(_config()).get_heads())


def revisions() -> tuple[str, ...]:
    """Every revision in ``migrations/``, oldest first."""
    from alembic.script import ScriptDirectory

    return tuple(reversed([r.revision for r in ScriptDirectory.from_config(_config()).walk_revisions()]))


HEAD = "0010"  # the newest revision in migrations/ (tests/test_migrations.py checks it against Alembic's view)


def is_current(url: str | Engine) -> bool:
    """Whether the database is at :data:`HEAD`. It reads Alembic's version table itself: importing
    Alembic to ask it costs ~0.3 s of every command's start, and this is asked by every one."""
    with _engine(url) as engine:
        try:
            with engine.connect() as conn:
                if not conn.dialect.has_table(conn, "alembic_version"):
                    return False
                found = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        except SQLAlchemyError as exc:
            raise _failure(engine, exc, "cannot read the schema revision") from exc
    return found == [HEAD]
