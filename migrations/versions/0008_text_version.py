"""text version: a counter that changes whenever what full-text search reads changes

Full-text search on SQLite answers from posting lists in a memory-mapped file in the user's
cache (``tvcaption.db.text_index``) instead of ranking every match in FTS5 per query; the file
says which version of the index it holds, and this counter (in 0007's ``search_versions``, row
``('text', N)``, starting at a random number) tells a search whether it still matches. Triggers
add 1 to N on every change of what the index or the ranking's order reads:

- the search index: on SQLite ``scene_fts`` is an FTS5 virtual table, which cannot carry
  triggers, so the counter follows the ``annotations`` rows that fill it (insert, update,
  delete of an annotation with a search field: exactly what 0006's index triggers follow); on
  PostgreSQL it follows ``scene_fts`` itself;
- a scene's ``start`` or recording (the order of equal scores) and a scene's deletion;
- a recording's ``status`` (only done recordings are searched) or ``path`` (the order of equal
  scores), and a recording's deletion; on PostgreSQL also TRUNCATE of these tables.

The counter is written in the writer's transaction, so a reader sees it change exactly when the
index does. A later migration that rewrites ``scene_fts`` by itself (as 0006 did) must add 1 too.

PostgreSQL: statement-level triggers calling ``search_versions_bump_text()``, as 0007's.

Downgrade drops the triggers, the function and the row.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BUMP = "UPDATE search_versions SET version = version + 1 WHERE name = 'text'"
FUNCTION = "search_versions_bump_text"
# (trigger name, SQLite event and condition, PostgreSQL event, table); None: not on that backend
TRIGGERS = (
    ("annotations_text_version_insert", "INSERT ON annotations WHEN new.field IS NOT NULL", None, "annotations"),
    ("annotations_text_version_update",
     "UPDATE ON annotations WHEN old.field IS NOT NULL OR new.field IS NOT NULL", None, "annotations"),
    ("annotations_text_version_delete", "DELETE ON annotations WHEN old.field IS NOT NULL", None, "annotations"),
    ("scene_fts_text_version_insert", None, "INSERT", "scene_fts"),
    ("scene_fts_text_version_update", None, "UPDATE", "scene_fts"),
    ("scene_fts_text_version_delete", None, "DELETE", "scene_fts"),
    ("scene_fts_text_version_truncate", None, "TRUNCATE", "scene_fts"),
    ("scenes_text_version_update", "UPDATE OF start, recording_id ON scenes", "UPDATE OF start, recording_id", "scenes"),
    ("scenes_text_version_delete", "DELETE ON scenes", "DELETE", "scenes"),
    ("scenes_text_version_truncate", None, "TRUNCATE", "scenes"),
    ("recordings_text_version_update", "UPDATE OF status, path ON recordings", "UPDATE OF status, path", "recordings"),
    ("recordings_text_version_delete", "DELETE ON recordings", "DELETE", "recordings"),
    ("recordings_text_version_truncate", None, "TRUNCATE", "recordings"),
)


def upgrade() -> None:
    # a random start: a database made anew at the same path never meets the cache file of the old one
    op.execute(f"INSERT INTO search_versions (name, version) VALUES ('text', {secrets.randbits(48)})")
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name, event, _, _ in TRIGGERS:
            if event is not None:
                op.execute(f"CREATE TRIGGER {name} AFTER {event} BEGIN {BUMP}; END")
    elif dialect == "postgresql":
        op.execute(f"CREATE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                   f"BEGIN {BUMP}; RETURN NULL; END $$")
        for name, _, event, table in TRIGGERS:
            if event is not None:
                op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} "
                           f"FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name, sqlite_event, pg_event, table in TRIGGERS:
        if (sqlite_event if dialect == "sqlite" else pg_event) is not None:
            op.execute(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if dialect == "postgresql" else ""))
    if dialect == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")
    op.execute("DELETE FROM search_versions WHERE name = 'text'")
