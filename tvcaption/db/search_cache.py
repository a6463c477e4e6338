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
_CHANGES_SQL = "SELECT recording_id FROM search_changes WHERE name = :name AND version > :since"


def changed_since(conn: Connection, name: str, since: int) -> frozenset[int] | None:
    """The recordings whose ``name`` content ('text' or 'vectors') changed after the counter's
    value ``since`` (migration 0009's ``search_changes``); None when that cannot be told (before
    that migration, or every recording changed): then a cache is rebuilt whole."""
    from sqlalchemy import text

    key = (conn.engine.url.render_as_string(hide_password=True), _CHANGES_SQL)
    try:
        if key in _answered:
            found = conn.execute(text(_CHANGES_SQL), {"name": name, "since": since}).scalars().all()
        else:
            with conn.begin_nested():
                found = conn.execute(text(_CHANGES_SQL), {"name": name, "since": since}).scalars().all()
            _answered.add(key)
    except DBAPIError:
        return None
    changed = frozenset(int(r) for r in found)
    return None if EVERY_RECORDING in changed else changed
