"""What the search caches in the user's cache folder share (:mod:`tvcaption.db.vector_index`,
:mod:`tvcaption.db.text_index`): the database's version counter for each (migrations 0007 and
0008), the folder, and the key that names one database's file there."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError


_answered: set[tuple[str, str]] = set()  # (database, counter's SQL) read before: the table is there


def version(conn: Connection, sql) -> int | None:
    """The counter ``sql`` reads from ``search_versions``, or None before its migration.

    The first read of a database is in a savepoint (on PostgreSQL a failed statement would spoil
    the transaction the search goes on in); later reads are one statement (on PostgreSQL the
    savepoint and its release were two more round trips a search)."""
    key = (conn.engine.url.render_as_string(hide_password=True), str(sql))
    if key in _answered:
        return conn.execute(sql).scalar()
    try:
        with conn.begin_nested():
            value = conn.execute(sql).scalar()
    except DBAPIError:
        return None
    _answered.add(key)
    return value


def cache_folder(kind: str) -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("tvcaption")) / kind


def database_key(conn: Connection, tag: str) -> str:
    """A file name for this database's cache of ``tag``: a SQLite file by its real path (any
    spelling of it meets the same cache), a server database by its URL (password hidden)."""
    url = conn.engine.url
    where = os.path.realpath(url.database) if url.get_backend_name() == "sqlite" and url.database else \
        url.render_as_string(hide_password=True)
    return hashlib.sha256(f"{url.get_backend_name()}\0{where}\0{tag}".encode()).hexdigest()[:24]


EVERY_RECORDING = 0  # search_changes.recording_id meaning all of them (migration 0009)
LOG_START = -1  # search_changes.recording_id of the row saying from which value on changes are logged
_CHANGES_SQL = ("SELECT recording_id, version FROM search_changes WHERE name = :name "
                "AND (version > :since OR recording_id = -1)")


def changed_since(conn: Connection, name: str, since: int, current: int) -> frozenset[int] | None:
    """The recordings whose ``name`` content ('text' or 'vectors') changed after the counter's
    value ``since`` (migration 0009's ``search_changes``; ``current`` the counter now); None when
    that cannot be told: before that migration, changes not logged since then (a cache older than
    the log, or newer than the counter: another database's at the same path), or every recording
    changed. A cache is then rebuilt whole."""
    from sqlalchemy import text

    if since >= current:
        return None if since > current else frozenset()
    key = (conn.engine.url.render_as_string(hide_password=True), _CHANGES_SQL)
    try:
        if key in _answered:
            found = conn.execute(text(_CHANGES_SQL), {"name": name, "since": since}).all()
        else:
            with conn.begin_nested():
                found = conn.execute(text(_CHANGES_SQL), {"name": name, "since": since}).all()
            _answered.add(key)
    except DBAPIError:
        return None
    start = next((int(v) for r, v in found if int(r) == LOG_START), None)
    if start is None or since < start:
        return None
    changed = frozenset(int(r) for r, v in found if int(r) != LOG_START)
    return None if EVERY_RECORDING in changed else changed
