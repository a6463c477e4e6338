"""Alembic wrapped in four functions (what ``tvcaption db upgrade`` and ``connect()`` call).

Each takes a database URL or an open :class:`~sqlalchemy.engine.Engine`. An in-memory SQLite
database only exists inside its engine, so pass the engine there. The Alembic environment is the
repository's top-level ``migrations/`` folder, found next to the ``tvcaption`` package (the
package is installed editable; a wheel would need ``migrations/`` shipped as package data).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from tvcaption.errors import DatabaseError

# Any constant will do: PostgreSQL workers starting together take this lock, so only one of
# them migrates and the others then find the schema at head.
_PG_MIGRATION_LOCK = 7_468_657_220  # "tvcaption"-ish, within bigint


def migrations_dir() -> Path:
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


@contextmanager
def _engine(url_or_engine: str | Engine) -> Iterator[Engine]:
    if isinstance(url_or_engine, Engine):
        yield url_or_engine
        return
    from tvcaption.db.store import connect

    engine = connect(url_or_engine, migrate=False)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def _migrating(url_or_engine: str | Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the database's migration lock."""
    from alembic.util import CommandError

    with _engine(url_or_engine) as engine:
        try:
            # SQLite: BEGIN IMMEDIATE (store.py) takes the write lock before Alembic reads the
            # current revision, so two processes cannot both run the same migration.
            with engine.connect().execution_options(tvcaption_write=True) as conn, conn.begin():
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
            raise DatabaseError(f"{_label(engine)}: migration failed: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text_ = str(getattr(exc, "orig", None) or exc).strip()
    return text_.splitlines()[0] if text_ else type(exc).__name__


def upgrade(url: str | Engine, rev: str = "head") -> None:
    """Migrate the database up to ``rev`` (default: the newest revision)."""
    from alembic import command

    with _migrating(url) as conn:
        command.upgrade(_config(conn), rev)


def downgrade(url: str | Engine, rev: str) -> None:
    """Migrate the database down to ``rev`` (``"base"`` drops every table)."""
    from alembic import command

    with _migrating(url) as conn:
        command.downgrade(_config(conn), rev)


def current(url: str | Engine) -> str | None:
    """The database's revision, or None for a database that was never migrated."""
    from alembic.runtime.migration import MigrationContext

    with _engine(url) as engine:
        try:
            with engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()
        except SQLAlchemyError as exc:
            raise DatabaseError(f"{_label(engine)}: cannot read the schema revision: {_first_line(exc)}") from exc


def heads() -> tuple[str, ...]:
    """The newest revision(s) in ``migrations/``; a healthy tree has exactly one."""
    from alembic.script import ScriptDirectory

    return tuple(ScriptDirectory.from_config(_config()).get_heads())


def revisions() -> tuple[str, ...]:
    """Every revision in ``migrations/``, oldest first."""
    from alembic.script import ScriptDirectory

    return tuple(reversed([r.revision for r in ScriptDirectory.from_config(_config()).walk_revisions()]))


def is_current(url: str | Engine) -> bool:
    return current(url) in heads()
