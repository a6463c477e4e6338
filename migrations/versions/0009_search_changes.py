"""search changes: which recordings each search-cache counter changed for, and at which value

The search caches (``tvcaption.db.text_index``, ``tvcaption.db.vector_index``) hold a whole
archive at one version of migrations 0007/0008's counters; when the counter moved they were
rebuilt whole by the next search (at 1M scenes 26 s for the words, 20 s for the vectors), so a
single correction in the review app made the next search wait that long. Now the triggers that
move a counter also say for which recordings: ``search_changes`` holds one row per (counter,
recording) with the counter's value after that recording's last change, so a cache at version V
answers for every recording but those changed after V (``version > V``), and reads those few from
the database (their rows, their vectors) beside it. A row with ``recording_id`` -1 per counter
says from which value on changes are logged (the counter's value at this migration, or when a
database is made): a cache older than that, or newer than the counter (another database's), is
rebuilt.

The same events as 0007 and 0008 move the counters; each trigger now also writes the recordings
(an annotation's scene's recording; a scene's old and new recording; the recording itself). A
``recording_id`` of 0 means every recording (PostgreSQL's TRUNCATE): a cache then is rebuilt.

- SQLite: 0007's and 0008's triggers are made again with the same names, each body adding 1 to
  the counter, then writing its recordings with the new value (an upsert).
- PostgreSQL: statement-level triggers with transition tables (a function per trigger): a
  statement moves the counter once, and only when a row changed what search reads (UPDATE
  triggers compare the old and new rows: transition tables cannot have a column list). The
  counter's row lock, taken before the rows are written, makes writers queue, so values are
  written in commit order and a reader never misses a change below a value it has seen.

Downgrade drops the table and makes 0007's and 0008's triggers again.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ALL = 0  # recording_id meaning every recording
LOG_START = -1  # recording_id of the row saying from which value of the counter on changes are logged


def _bump(name: str) -> str:
    return f"UPDATE search_versions SET version = version + 1 WHERE name = '{name}'"


def _log_sqlite(name: str, recordings: str) -> str:
    """The upsert of the recordings ``recordings`` (a SELECT of one column ``r``) at the counter's value."""
    return (f"INSERT INTO search_changes (name, recording_id, version) SELECT '{name}', x.r, v.version "
            f"FROM ({recordings}) x, search_versions v WHERE v.name = '{name}' AND x.r IS NOT NULL "
            "ON CONFLICT (name, recording_id) DO UPDATE SET version = excluded.version")


_SCENE_OF = "SELECT recording_id AS r FROM scenes WHERE id = {}"
# SQLite (row triggers): name, event (with its condition), counter, the recordings it changed
SQLITE = (
    ("annotations_text_version_insert", "INSERT ON annotations WHEN new.field IS NOT NULL", "text",
     _SCENE_OF.format("new.scene_id")),
    ("annotations_text_version_update", "UPDATE ON annotations WHEN old.field IS NOT NULL OR new.field IS NOT NULL",
     "text", f"{_SCENE_OF.format('new.scene_id')} UNION {_SCENE_OF.format('old.scene_id')}"),
    ("annotations_text_version_delete", "DELETE ON annotations WHEN old.field IS NOT NULL", "text",
     _SCENE_OF.format("old.scene_id")),
    ("scenes_text_version_update", "UPDATE OF start, recording_id ON scenes", "text",
     "SELECT new.recording_id AS r UNION SELECT old.recording_id"),
    ("scenes_text_version_delete", "DELETE ON scenes", "text", "SELECT old.recording_id AS r"),
    ("recordings_text_version_update", "UPDATE OF status, path ON recordings", "text", "SELECT new.id AS r"),
    ("recordings_text_version_delete", "DELETE ON recordings", "text", "SELECT old.id AS r"),
    ("recording_vectors_version_insert", "INSERT ON recording_vectors", "vectors", "SELECT new.recording_id AS r"),
    ("recording_vectors_version_update", "UPDATE ON recording_vectors", "vectors",
     "SELECT new.recording_id AS r UNION SELECT old.recording_id"),
    ("recording_vectors_version_delete", "DELETE ON recording_vectors", "vectors", "SELECT old.recording_id AS r"),
    ("recordings_version_status", "UPDATE OF status ON recordings", "vectors", "SELECT new.id AS r"),
    ("recordings_version_delete", "DELETE ON recordings", "vectors", "SELECT old.id AS r"),
)

# PostgreSQL (statement triggers): name, table, event, transition tables, counter, the recordings
# it changed (a SELECT of one column ``r``; None: every recording, for TRUNCATE)
_CHANGED_SCENES = "SELECT s.recording_id AS r FROM {} c JOIN scenes s ON s.id = c.scene_id"
_MOVED = "SELECT o.{0} AS r FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE {1} UNION SELECT n.{0} FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE {1}"
POSTGRESQL = (
    ("scene_fts_text_version_insert", "scene_fts", "INSERT", "NEW TABLE AS new_rows", "text", _CHANGED_SCENES.format("new_rows")),
    ("scene_fts_text_version_update", "scene_fts", "UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows", "text",
     f"{_CHANGED_SCENES.format('new_rows')} UNION {_CHANGED_SCENES.format('old_rows')}"),
    ("scene_fts_text_version_delete", "scene_fts", "DELETE", "OLD TABLE AS old_rows", "text",
     _CHANGED_SCENES.format("old_rows")),
    ("scene_fts_text_version_truncate", "scene_fts", "TRUNCATE", None, "text", None),
    ("scenes_text_version_update", "scenes", "UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows", "text",
     _MOVED.format("recording_id", "o.start IS DISTINCT FROM n.start OR o.recording_id IS DISTINCT FROM n.recording_id")),
    ("scenes_text_version_delete", "scenes", "DELETE", "OLD TABLE AS old_rows", "text", "SELECT recording_id AS r FROM old_rows"),
    ("scenes_text_version_truncate", "scenes", "TRUNCATE", None, "text", None),
    ("recordings_text_version_update", "recordings", "UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows", "text",
     _MOVED.format("id", "o.status IS DISTINCT FROM n.status OR o.path IS DISTINCT FROM n.path")),
    ("recordings_text_version_delete", "recordings", "DELETE", "OLD TABLE AS old_rows", "text", "SELECT id AS r FROM old_rows"),
    ("recordings_text_version_truncate", "recordings", "TRUNCATE", None, "text", None),
    ("recording_vectors_version_insert", "recording_vectors", "INSERT", "NEW TABLE AS new_rows", "vectors",
     "SELECT recording_id AS r FROM new_rows"),
    ("recording_vectors_version_update", "recording_vectors", "UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows",
     "vectors", "SELECT recording_id AS r FROM new_rows UNION SELECT recording_id FROM old_rows"),
    ("recording_vectors_version_delete", "recording_vectors", "DELETE", "OLD TABLE AS old_rows", "vectors",
     "SELECT recording_id AS r FROM old_rows"),
    ("recording_vectors_version_truncate", "recording_vectors", "TRUNCATE", None, "vectors", None),
    ("recordings_version_status", "recordings", "UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows", "vectors",
     _MOVED.format("id", "o.status IS DISTINCT FROM n.status")),
    ("recordings_version_delete", "recordings", "DELETE", "OLD TABLE AS old_rows", "vectors", "SELECT id AS r FROM old_rows"),
    ("recordings_version_truncate", "recordings", "TRUNCATE", None, "vectors", None),
)


def _pg_body(name: str, recordings: str | None) -> str:
    if recordings is None:
        recordings = f"SELECT {ALL} AS r"
    return (f"WITH x AS ({recordings}), b AS ({_bump(name)} AND EXISTS (SELECT 1 FROM x WHERE r IS NOT NULL) "
            "RETURNING version) "
            f"INSERT INTO search_changes (name, recording_id, version) SELECT DISTINCT '{name}', x.r, b.version "
            "FROM x, b WHERE x.r IS NOT NULL "
            "ON CONFLICT (name, recording_id) DO UPDATE SET version = EXCLUDED.version")


def upgrade() -> None:
    op.create_table(
        "search_changes",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("recording_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", "recording_id", name=op.f("pk_search_changes")),
    )
    op.create_index("ix_search_changes_name_version", "search_changes", ["name", "version"])
    # changes are logged from each counter's value now on: a cache of an older version (built
    # before this migration, or by another database at the same path) is rebuilt, not patched
    op.execute(f"INSERT INTO search_changes (name, recording_id, version) SELECT name, {LOG_START}, version "
               "FROM search_versions")
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for trigger, event, name, recordings in SQLITE:
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
            op.execute(f"CREATE TRIGGER {trigger} AFTER {event} BEGIN {_bump(name)}; {_log_sqlite(name, recordings)}; END")
    elif dialect == "postgresql":
        for trigger, table, event, transition, name, recordings in POSTGRESQL:
            op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
            op.execute(f"CREATE FUNCTION search_changes_{trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                       f"BEGIN {_pg_body(name, recordings)}; RETURN NULL; END $$")
            referencing = f" REFERENCING {transition}" if transition else ""
            op.execute(f"CREATE TRIGGER {trigger} AFTER {event} ON {table}{referencing} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION search_changes_{trigger}()")


# 0007's and 0008's triggers, made again by downgrade: name, SQLite event, PostgreSQL event, table, counter
_OLD = (
    ("recording_vectors_version_insert", "INSERT ON recording_vectors", "INSERT", "recording_vectors", "vectors"),
    ("recording_vectors_version_update", "UPDATE ON recording_vectors", "UPDATE", "recording_vectors", "vectors"),
    ("recording_vectors_version_delete", "DELETE ON recording_vectors", "DELETE", "recording_vectors", "vectors"),
    ("recordings_version_status", "UPDATE OF status ON recordings", "UPDATE OF status", "recordings", "vectors"),
    ("recordings_version_delete", "DELETE ON recordings", "DELETE", "recordings", "vectors"),
    ("recording_vectors_version_truncate", None, "TRUNCATE", "recording_vectors", "vectors"),
    ("recordings_version_truncate", None, "TRUNCATE", "recordings", "vectors"),
    ("annotations_text_version_insert", "INSERT ON annotations WHEN new.field IS NOT NULL", None, "annotations", "text"),
    ("annotations_text_version_update",
     "UPDATE ON annotations WHEN old.field IS NOT NULL OR new.field IS NOT NULL", None, "annotations", "text"),
    ("annotations_text_version_delete", "DELETE ON annotations WHEN old.field IS NOT NULL", None, "annotations", "text"),
    ("scene_fts_text_version_insert", None, "INSERT", "scene_fts", "text"),
    ("scene_fts_text_version_update", None, "UPDATE", "scene_fts", "text"),
    ("scene_fts_text_version_delete", None, "DELETE", "scene_fts", "text"),
    ("scene_fts_text_version_truncate", None, "TRUNCATE", "scene_fts", "text"),
    ("scenes_text_version_update", "UPDATE OF start, recording_id ON scenes", "UPDATE OF start, recording_id", "scenes", "text"),
    ("scenes_text_version_delete", "DELETE ON scenes", "DELETE", "scenes", "text"),
    ("scenes_text_version_truncate", None, "TRUNCATE", "scenes", "text"),
    ("recordings_text_version_update", "UPDATE OF status, path ON recordings", "UPDATE OF status, path", "recordings", "text"),
    ("recordings_text_version_delete", "DELETE ON recordings", "DELETE", "recordings", "text"),
    ("recordings_text_version_truncate", None, "TRUNCATE", "recordings", "text"),
)
_OLD_FUNCTIONS = {"vectors": "search_versions_bump", "text": "search_versions_bump_text"}  # 0007's and 0008's, kept


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for trigger, event, _, table, name in _OLD:
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
            if event is not None:
                op.execute(f"CREATE TRIGGER {trigger} AFTER {event} BEGIN {_bump(name)}; END")
    elif dialect == "postgresql":
        for trigger, table, *_ in POSTGRESQL:
            op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS search_changes_{trigger}()")
        for trigger, _, event, table, name in _OLD:
            if event is not None:
                op.execute(f"CREATE TRIGGER {trigger} AFTER {event} ON {table} "
                           f"FOR EACH STATEMENT EXECUTE FUNCTION {_OLD_FUNCTIONS[name]}()")
    op.drop_index("ix_search_changes_name_version", table_name="search_changes")
    op.drop_table("search_changes")
