"""What the search caches in the user's cache folder share (:mod:`tvcaption.db.vector_index`,
:mod:`tvcaption.db.text_index`): the database's version counter for each (migrations 0007 and
0008), the folder, the key that names one database's file there, and the sweep that removes
the files of SQLite databases that are gone."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError


TEXT_VERSION_SQL = text("SELECT version FROM search_versions WHERE name = 'text'")  # migration 0008

_answered: set[tuple[str, str]] = set()  # (database, counter's SQL) read before: the table is there


def _rows(conn: Connection, sql, params: dict | None = None) -> list | None:
    """The rows of ``sql`` (a table of a migration the database may not have), None when it fails.

    The first read of a database is in a savepoint (on PostgreSQL a failed statement would spoil
    the transaction the search goes on in); later reads are one statement (on PostgreSQL the
    savepoint and its release were two more round trips a search)."""
    key = (conn.engine.url.render_as_string(hide_password=True), str(sql))
    if key in _answered:
        return conn.execute(sql, params or {}).all()
    try:
        with conn.begin_nested():
            rows = conn.execute(sql, params or {}).all()
    except DBAPIError:
        return None
    _answered.add(key)
    return rows


def version(conn: Connection, sql) -> int | None:
    """The counter ``sql`` reads from ``search_versions``, or None before its migration."""
    rows = _rows(conn, sql)
    return rows[0][0] if rows else None


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


def note_source(conn: Connection, path: Path) -> None:
    """Beside a SQLite database's cache file ``path``, which database it is (``KEY.source``: its
    real path), written once; when written, the folder is swept (:func:`sweep`). Server databases
    are left alone: whether one still exists cannot be told from here."""
    url = conn.engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    source = path.with_name(path.name.split(".", 1)[0] + ".source")
    if source.is_file():
        return
    try:
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(os.path.realpath(url.database), encoding="utf-8")
    except OSError:
        return  # an unwritable cache folder: the caches are held in memory there
    sweep(source.parent)


def sweep(folder: Path) -> int:
    """Remove from ``folder`` the cache files of SQLite databases that are gone (an archive
    deleted or moved leaves ~1.7 GB of lists and vectors at 1M scenes); how many files went."""
    gone = 0
    for source in folder.glob("*.source"):
        try:
            database = source.read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if not database or os.path.exists(database):
            continue
        key = source.name[:-len(".source")]
        for file in [*folder.glob(f"{key}.*"), source]:
            try:
                file.unlink()
                gone += 1
            except OSError:
                pass
    return gone


EVERY_RECORDING = 0  # search_changes.recording_id meaning all of them (migration 0009)
LOG_START = -1  # search_changes.recording_id of the row saying from which value on changes are logged
_CHANGES_SQL = text("SELECT recording_id, version FROM search_changes WHERE name = :name "
                    "AND (version > :since OR recording_id = -1)")
MAX_CHANGED = 500  # recordings changed since a cache was built, above which it is rebuilt
DELTA_ROWS = 20_000  # rows of those recordings above which it is rebuilt (or 2% of its rows)


def delta_fits(recordings: int, rows: int, base_rows: int, min_rows: int = 0) -> bool:
    """Whether a cache of ``base_rows`` answers with a delta of ``rows`` from ``recordings``
    (``min_rows``: the smallest cache that does)."""
    return base_rows >= min_rows and recordings <= MAX_CHANGED and rows <= max(DELTA_ROWS, base_rows // 50)


def changed_since(conn: Connection, name: str, since: int, current: int) -> frozenset[int] | None:
    """The recordings whose ``name`` content ('text' or 'vectors') changed after the counter's
    value ``since`` (migration 0009's ``search_changes``; ``current`` the counter now); None when
    that cannot be told: before that migration, changes not logged since then (a cache older than
    the log, or newer than the counter: another database's at the same path), or every recording
    changed. A cache is then rebuilt whole."""
    if since >= current:
        return None if since > current else frozenset()
    found = _rows(conn, _CHANGES_SQL, {"name": name, "since": since})
    if found is None:
        return None
    start = next((int(v) for r, v in found if int(r) == LOG_START), None)
    if start is None or since < start:
        return None
    changed = frozenset(int(r) for r, v in found if int(r) != LOG_START)
    return None if EVERY_RECORDING in changed else changed
