"""A new SQLite database made at once from the schema the migrations build, without Alembic.

Making a new database by running every migration cost the first ``tvcaption index`` into a new
file ~0.4 s (Alembic's import ~0.3 s of it, then eight revisions) before its first frame. A new
database is the schema at :data:`~tvcaption.db.migrate.HEAD` and nothing else, so it is made from
``tvcaption/resources/sqlite_head.sql``: the statements of a database migrated to HEAD, read from
its ``sqlite_master`` in creation order (tables, indexes, triggers, the FTS5 table; not the
tables FTS5 makes for itself), and its rows (the Alembic revision; ``search_versions``' counters
start at a random number, as migrations 0007 and 0008 start them, and ``search_changes`` logs
from there, as migration 0009 starts it). Everything that is not an
empty database (an older schema, any table at all) is migrated by Alembic as before, and so is
every PostgreSQL database.

``python scripts/make_sqlite_snapshot.py`` writes the file; tests/test_migrations.py checks that
the shipped file is what it writes today and that a database made from it equals a migrated one
(every object, the revision, FTS5's configuration) and migrates down and up again through Alembic.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

FILE = "sqlite_head.sql"
HEADER = "-- tvcaption: a new SQLite database at revision {revision} (scripts/make_sqlite_snapshot.py writes this file)\n"
FTS5_SHADOWS = ("data", "idx", "content", "docsize", "config")  # the tables FTS5 makes for a virtual table
SEEDED = {"alembic_version", "search_versions", "search_changes"}  # the only tables a new database holds rows in
RANDOM_START = "abs(random()) % 281474976710656"  # 48 bits, as the migrations' secrets.randbits(48)


def path() -> Path:
    from importlib import resources

    return Path(str(resources.files("tvcaption.resources"))) / FILE


def dump(db: sqlite3.Connection) -> tuple[str, list[str]]:
    """(revision, statements) that make ``db`` (a database migrated to its head and nothing else)
    again; a table with rows other than :data:`SEEDED`'s is an error (a migration that seeds data
    must be added here)."""
    virtual = [name for name, sql in db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
               if (sql or "").upper().startswith("CREATE VIRTUAL TABLE")]
    shadows = {f"{v}_{suffix}" for v in virtual for suffix in FTS5_SHADOWS}
    statements, tables = [], []
    for kind, name, sql in db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY rowid"):
        if sql is None or name.startswith("sqlite_") or name in shadows:
            continue  # automatic indexes, SQLite's own tables, FTS5's tables: made by the statements
        statements.append(sql)
        if kind == "table" and name not in virtual:
            tables.append(name)
    for table in tables:
        count = db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
        if count and table not in SEEDED:
            raise ValueError(f"{table} holds {count} rows in a new database: teach sqlite_snapshot.dump about them")
    (revision,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    statements.append(f"INSERT INTO alembic_version (version_num) VALUES ('{revision}')")
    for (name,) in db.execute("SELECT name FROM search_versions ORDER BY name"):
        statements.append(f"INSERT INTO search_versions (name, version) VALUES ('{name}', {RANDOM_START})")
    # each counter's log-start row (migration 0009), at the counter's random start
    starts = db.execute("SELECT c.name, c.recording_id, c.version = v.version FROM search_changes c "
                        "LEFT JOIN search_versions v ON v.name = c.name ORDER BY c.name").fetchall()
    if any(rid != -1 or not same for _, rid, same in starts):
        raise ValueError("search_changes holds more than each counter's log start: teach sqlite_snapshot.dump")
    if starts:
        statements.append("INSERT INTO search_changes (name, recording_id, version) "
                          "SELECT name, -1, version FROM search_versions")
    return revision, statements


def render(revision: str, statements: list[str]) -> str:
    return HEADER.format(revision=revision) + "".join(f"{s};\n" for s in statements)


def parse(text: str) -> tuple[str | None, list[str]]:
    """(revision, statements) of a snapshot file's text; revision None when it is not one."""
    first, _, body = text.partition("\n")
    prefix, _, rest = HEADER.partition("{revision}")
    if not first.startswith(prefix) or not (first + "\n").endswith(rest):
        return None, []
    revision = first[len(prefix):len(first) + 1 - len(rest)]
    statements, pending = [], ""
    for line in body.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip().removesuffix(";"))
            pending = ""
    if pending.strip():
        return None, []
    return revision, statements


def statements(revision: str) -> list[str] | None:
    """The shipped snapshot's statements when it is at ``revision``, else None (then Alembic migrates)."""
    try:
        found, made = parse(path().read_text(encoding="utf-8"))
    except (OSError, ModuleNotFoundError, UnicodeDecodeError):
        return None
    return made if found == revision and made else None
