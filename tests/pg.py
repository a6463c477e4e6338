"""A real, throwaway PostgreSQL server for the storage tests, and the two-backend fixtures.

``pg_url`` (session) starts a throwaway server (``scripts/pgserver.py``: initdb and pg_ctl in a
temporary folder, on 127.0.0.1, as an unprivileged user when we are root, durability off) and
makes a fresh database; the server is stopped and deleted at the end of the session.

- ``TVCAPTION_TEST_PG_URL=postgresql+psycopg://user@host:port/db``: use that server instead
  (the user must be allowed to CREATE DATABASE); nothing is started.
- ``TVCAPTION_PG_BIN``: the folder holding initdb and pg_ctl, when they are not on PATH or in
  /usr/lib/postgresql/*/bin.
- ``TVCAPTION_REQUIRE_PG=1`` (CI): fail instead of skipping when no server can be had.

``db_url`` (per test, parametrized sqlite / postgres) is a migrated, empty database;
``empty_db_url`` is one that was never migrated. Test modules load this file with
``pytest_plugins = ["pg"]`` (conftest may list it instead); the server is a per-process
singleton either way.
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from pgserver import PG_BIN_ENV, LocalServer, find_pg_bin  # noqa: E402

PG_URL_ENV = "TVCAPTION_TEST_PG_URL"
REQUIRE_ENV = "TVCAPTION_REQUIRE_PG"
SERVER_SETTINGS = "-c max_connections=60 -c shared_buffers=32MB"  # durability is off in pgserver


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
        pytest.fail(f"{reason} ({REQUIRE_ENV} is set)", pytrace=False)
    pytest.skip(reason)


class Cluster:
    """Databases on one server, created and dropped through an admin connection."""

    def __init__(self, host: str, port: int, user: str, password: str | None = None,
                 admin_db: str = "postgres") -> None:
        self.host, self.port, self.user, self.password, self.admin_db = host, port, user, password, admin_db
        self._names = itertools.count()

    def url(self, database: str) -> str:
        from sqlalchemy.engine import URL

        return URL.create("postgresql+psycopg", username=self.user, password=self.password,
                          host=self.host, port=self.port, database=database).render_as_string(hide_password=False)

    def execute(self, database: str, sql: str) -> None:
        import psycopg

        with psycopg.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                             dbname=database, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql)

    def _admin(self, sql: str) -> None:
        self.execute(self.admin_db, sql)

    def create(self, prefix: str = "t", template: str = "template0", locale: str | None = None) -> str:
        """A new database (a copy of ``template``; ``locale``: its LC_COLLATE and LC_CTYPE, with
        template0, instead of the server's); returns its name."""
        import psycopg

        name = f"tvcaption_{prefix}_{os.getpid()}_{next(self._names)}"
        sql = f'CREATE DATABASE "{name}" TEMPLATE "{template}" ENCODING \'UTF8\''
        if locale is not None:
            sql += f" LC_COLLATE '{locale}' LC_CTYPE '{locale}'"
        try:  # FILE_COPY: 15 ms instead of 250 for a tiny template (PostgreSQL 15 defaults to WAL_LOG)
            self._admin(sql + " STRATEGY FILE_COPY")
        except psycopg.errors.SyntaxError:  # server older than 15
            self._admin(sql)
        return name

    def drop(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        pass


class OwnServer(Cluster):
    """A server of our own (scripts/pgserver.py) in a temporary folder, stopped at exit."""

    def __init__(self, bindir: Path) -> None:
        self.server = LocalServer(bindir, settings=SERVER_SETTINGS)
        super().__init__("127.0.0.1", 0, "postgres")

    def start(self) -> OwnServer:
        self.port = self.server.start().port
        atexit.register(self.stop)
        return self

    def stop(self) -> None:
        self.server.stop()


_CLUSTER: Cluster | None = None
_TEMPLATE: str | None = None
_SHARED: str | None = None
_USERS = 0  # live pg_url fixtures: one per module that imports it, unless registered as a plugin


def cluster() -> Cluster:
    """The session's server: started on first use, stopped at exit (or by ``pg_url``)."""
    global _CLUSTER
    if _CLUSTER is None:
        if os.environ.get(PG_URL_ENV):
            from sqlalchemy.engine import make_url

            u = make_url(os.environ[PG_URL_ENV])
            _CLUSTER = Cluster(u.host or "127.0.0.1", u.port or 5432, u.username or "postgres",
                               u.password, u.database or "postgres")
        else:
            bindir = find_pg_bin()
            if bindir is None:
                _unavailable(f"PostgreSQL server binaries (initdb, pg_ctl) not found; install PostgreSQL "
                             f"or set {PG_BIN_ENV} to their folder, or {PG_URL_ENV} to a server")
            _CLUSTER = OwnServer(bindir).start()
    return _CLUSTER


def migrated_template() -> str:
    """A database at the newest schema revision, copied (CREATE DATABASE ... TEMPLATE) per test."""
    global _TEMPLATE
    if _TEMPLATE is None:
        from tvcaption.db import migrate

        server = cluster()
        name = server.create("template")
        migrate.upgrade(server.url(name))  # disposes its engine: a template must have no sessions
        _TEMPLATE = name
    return _TEMPLATE


def shared_database() -> str:
    """The migrated database that ``db_url`` hands out, emptied before each test.

    TRUNCATE takes 15 ms; a new database per test would take 250 ms (CREATE DATABASE
    checkpoints).
    """
    global _SHARED
    server = cluster()
    if _SHARED is None:
        _SHARED = server.create("shared", migrated_template())
    server.execute(_SHARED, "SET lock_timeout = '5s'; "
                            "TRUNCATE recordings, models RESTART IDENTITY CASCADE")
    return server.url(_SHARED)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of an empty database on the session's PostgreSQL server."""
    global _USERS, _TEMPLATE, _SHARED
    server = cluster()
    name = server.create("session")
    _USERS += 1
    yield server.url(name)
    _USERS -= 1
    server.drop(name)
    if _USERS == 0:
        for leftover in (_SHARED, _TEMPLATE):
            if leftover is not None:
                server.drop(leftover)
        _SHARED = _TEMPLATE = None
        server.stop()


@pytest.fixture
def fresh_pg_url(pg_url: str) -> Iterator[object]:
    """A factory of new PostgreSQL databases (migrated or not), dropped after the test."""
    server = cluster()
    names: list[str] = []

    def make(migrated: bool = True) -> str:
        names.append(server.create("t", migrated_template() if migrated else "template0"))
        return server.url(names[-1])

    yield make
    for name in names:
        server.drop(name)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tvcaption.db.store import connect

    path = tmp_path_factory.mktemp("sqlite-template") / "tvcaption.db"
    connect(f"sqlite:///{path}").dispose()  # migrates; closing the last connection checkpoints the WAL
    return path


BACKENDS = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def db_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def db_url(db_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database on each backend."""
    if db_backend == "sqlite":
        path = tmp_path / "tvcaption.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        return f"sqlite:///{path}"
    request.getfixturevalue("pg_url")
    return shared_database()


@pytest.fixture
def empty_db_url(db_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database on each backend that was never migrated."""
    if db_backend == "sqlite":
        return f"sqlite:///{tmp_path / 'tvcaption.db'}"
    return request.getfixturevalue("fresh_pg_url")(migrated=False)
