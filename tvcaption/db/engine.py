"""Opening a database: engines, SQLite's connection settings, and database errors as one line.

SQLite is opened in WAL mode (readers never block the writer), with foreign keys on and a busy
timeout. pysqlite's own transaction handling is switched off (it does not BEGIN before DDL, so
migrations would not be atomic) and replaced by an explicit ``BEGIN``; a connection opened by
:func:`begin_write` emits ``BEGIN IMMEDIATE`` instead, so its transaction takes the write lock up
front rather than failing half-way when another process committed since it first read. A second
writer therefore waits up to ``busy_timeout`` seconds and then gets a :class:`DatabaseError`
naming the file, never a half-written recording. Both the store's writes and the migrations
(:mod:`tvcaption.db.migrate`) write through :func:`begin_write`; it is the only place that knows
how a write transaction starts.

:func:`open_engine` never migrates: :func:`tvcaption.db.store.connect` (which also imports the
migrations) does that on top of it. A damaged SQLite file ("database disk image is malformed",
"file is not a database") is one :class:`DatabaseError` line (:func:`damaged_error`), never a
driver traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import DBAPIError, OperationalError

from tvcaption.errors import DatabaseError, MissingDatabaseError

INDEX_HINT = "index recordings first (tvcaption index FOLDER) or pass --db"
# The execution option that makes the SQLite engines of open_engine() begin with BEGIN IMMEDIATE.
_WRITE_OPTION = "tvcaption_write"


def normalize_url(url: str | URL) -> URL:
    u = make_url(url)
    # psycopg 3 is the driver we ship; plain postgresql:// would ask for psycopg2.
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u


def sqlite_file(u: URL) -> Path | None:
    """The file of a SQLite URL, or None for an in-memory (or URI) database."""
    db = u.database
    if not db or db == ":memory:" or db.startswith("file:") or u.query.get("mode") == "memory":
        return None
    return Path(db)


def db_label(engine_or_url: Engine | str | URL) -> str:
    """How messages name a database: a SQLite file's path, otherwise the URL without its password."""
    u = engine_or_url.url if isinstance(engine_or_url, Engine) else normalize_url(engine_or_url)
    if u.get_backend_name() == "sqlite":
        file = sqlite_file(u)
        if file is not None:
            return str(file)
    return u.render_as_string(hide_password=True)


def first_line(exc: BaseException) -> str:
    """The first line of a driver's message (or the exception's type when it has none)."""
    message = str(getattr(exc, "orig", None) or exc).strip()
    return message.splitlines()[0].strip() if message else type(exc).__name__


# SQLite result codes (the low byte of an extended code) that mean the file itself is bad:
# SQLITE_CORRUPT ("database disk image is malformed", also from FTS5 and the schema) and
# SQLITE_NOTADB ("file is not a database").
_DAMAGE_CODES = {11, 26}
_DAMAGE_WORDS = ("database disk image is malformed", "file is not a database", "malformed database schema",
                 "fts5: corrupt", "fts5: corruption")


def damage(exc: BaseException) -> str | None:
    """The reason when ``exc`` (a SQLAlchemy or sqlite3 error) says a SQLite file is damaged, else None."""
    orig = getattr(exc, "orig", None) or exc
    code = getattr(orig, "sqlite_errorcode", None)
    reason = first_line(orig)
    if isinstance(code, int) and code & 0xFF in _DAMAGE_CODES:
        return reason
    if type(orig).__module__.startswith("sqlite3") and any(w in reason.lower() for w in _DAMAGE_WORDS):
        return reason
    return None


def damaged_error(engine_or_url: Engine | str | URL, reason: str) -> DatabaseError:
    return DatabaseError(f"{db_label(engine_or_url)}: the database file is damaged ({reason}); restore it from a "
                         "backup or index into a new one with --db")


def database_error(engine: Engine, exc: BaseException) -> DatabaseError | None:
    """The one-line error for a database failure that is not the caller's bug, or None to re-raise.

    A damaged SQLite file and a lock held too long by another writer are named as such; any other
    OperationalError (server gone, disk full, permissions) is its first line after the database.
    Integrity errors and the like return None: they are bugs to see in full.
    """
    reason = damage(exc)
    if reason is not None:
        return damaged_error(engine, reason)
    if not isinstance(exc, OperationalError):
        return None
    message = first_line(exc)
    name = engine.url.render_as_string(hide_password=True)
    if "database is locked" in message or "database is busy" in message:
        waited = (engine.info or {}).get("busy_timeout", 0)
        return DatabaseError(
            f"{name}: database is locked by another writer (waited {waited:g} s); run one "
            "indexer per SQLite file, or use PostgreSQL for parallel workers")
    return DatabaseError(f"{name}: {message}")


@contextmanager
def begin_write(engine: Engine) -> Iterator[Connection]:
    """A connection in a write transaction, committed when the block ends (rolled back on error).

    On a SQLite engine of :func:`open_engine` it starts with ``BEGIN IMMEDIATE``: the write lock
    is held from the first statement on. Errors are raised as they come (see :func:`mapped`)."""
    with engine.connect().execution_options(**{_WRITE_OPTION: True}) as conn, conn.begin():
        yield conn


@contextmanager
def mapped(engine: Engine) -> Iterator[None]:
    """Driver errors inside the block as the one-line :func:`database_error`, bugs as they are."""
    try:
        yield
    except DBAPIError as exc:
        error = database_error(engine, exc)
        if error is None:
            raise
        raise error from exc


def open_engine(url: str | URL, *, busy_timeout: float = 5.0, create: bool = True,
                schema: bool = False) -> Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``), never migrated.

    SQLite gets WAL, foreign keys and ``busy_timeout`` seconds of waiting for a lock, and its
    folder is created. ``create=False`` is for commands that only read: a SQLite file that does
    not exist raises :class:`MissingDatabaseError` (nothing is created, not even its folder); a
    PostgreSQL server or database that cannot be reached raises :class:`DatabaseError`. With
    ``schema`` too, a database that holds no tvcaption schema (an empty file, a new PostgreSQL
    database, someone else's tables) is refused in one line.
    """
    u = normalize_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        engine = _sqlite_engine(u, busy_timeout=busy_timeout, create=create, schema=schema)
    elif backend == "postgresql":
        engine = create_engine(u, pool_pre_ping=True)
    else:
        raise DatabaseError(f"{u.render_as_string(hide_password=True)}: unsupported database; "
                            "use sqlite:///path or postgresql+psycopg://...")
    engine.info = {"busy_timeout": busy_timeout}  # read by database_error for its message
    if not create:
        try:
            _check_exists(engine, schema)
        except BaseException:
            engine.dispose()
            raise
    return engine


def _sqlite_engine(u: URL, *, busy_timeout: float, create: bool, schema: bool) -> Engine:
    file = sqlite_file(u)
    empty_file = False
    if file is not None and str(file).startswith("~"):
        file = file.expanduser()  # sqlite3 would take "~" as a folder name
        u = u.set(database=str(file))
    if file is not None and not create:
        try:
            empty_file = file.stat().st_size == 0
        except FileNotFoundError:
            raise MissingDatabaseError(f"no database at {os.path.abspath(file)}; {INDEX_HINT}") from None
        except OSError as exc:
            raise DatabaseError(f"{file}: cannot open the database ({exc.strerror}); pass another --db") from None
        if schema and empty_file:
            raise DatabaseError(f"{file}: the database is empty (an empty file); {INDEX_HINT}")
    elif file is not None:
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(f"{file}: cannot create the database folder ({exc.strerror}); "
                                "set database.url to a writable path") from None
    engine = create_engine(u, connect_args={"timeout": busy_timeout})
    # an empty file stays empty: switching it to WAL would write a database header into it
    _sqlite_setup(engine, wal=file is not None and not empty_file, busy_timeout=busy_timeout,
                  must_exist=file is not None and not create)
    return engine


def _check_exists(engine: Engine, schema: bool) -> None:
    """For ``create=False``: the database can be opened and, with ``schema``, holds tvcaption's tables."""
    try:
        with engine.connect() as conn:
            if not schema:
                return
            tables = set(inspect(conn).get_table_names())
            if "alembic_version" in tables and conn.execute(
                    text("SELECT count(*) FROM alembic_version")).scalar_one() == 0:
                tables.discard("alembic_version")  # downgraded to base: as good as empty
    except DBAPIError as exc:
        reason = damage(exc)
        if reason is not None:
            raise damaged_error(engine, reason) from None
        fix = ("check the file's permissions" if engine.dialect.name == "sqlite"
               else "check the URL and that the server is running")
        raise DatabaseError(f"{db_label(engine)}: cannot open the database ({first_line(exc)}); "
                            f"{fix}, or pass another --db") from None
    if "alembic_version" in tables:
        return  # at some revision: migrated forward if it is an older one
    if tables - {"sqlite_sequence"}:
        raise DatabaseError(f"{db_label(engine)}: not a tvcaption database (it holds other tables "
                            f"and no schema revision); pass the right --db")
    raise DatabaseError(f"{db_label(engine)}: the database is empty (nothing was ever indexed into it); {INDEX_HINT}")


def _sqlite_setup(engine: Engine, *, wal: bool, busy_timeout: float, must_exist: bool = False) -> None:
    if must_exist:  # open with mode=rw: SQLite then never creates the file, even if it vanished meanwhile
        @event.listens_for(engine, "do_connect")
        def _no_create(_dialect, _record, cargs: list, cparams: dict) -> None:
            from urllib.parse import quote

            cargs[0] = "file:" + quote(os.path.abspath(cargs[0])) + "?mode=rw"
            cparams["uri"] = True

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, see module docstring
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        if wal:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
