"""search terms: CJK text found by any two characters, traditional or simplified

Adds ``annotations.terms`` (nullable text): extra index terms that tvcaption computes when it
stores an annotation (``tvcaption.search_terms.index_terms``: for each run of Chinese, Japanese or
Korean characters, converted to simplified Chinese, its characters and its neighbouring pairs).
The index's ``text`` and ``labels`` columns now hold each annotation's ``text`` followed by its
``terms``: the triggers (SQLite) and the refresh function (PostgreSQL) of 0003 are replaced by
ones that read both, and the terms of the annotations already stored are computed and indexed.

Downgrade drops the column and restores 0003's triggers and function; the index is rebuilt
from ``text`` alone.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WITH_TERMS = "a.text || coalesce(' ' || a.terms, '')"
TEXT_ONLY = "a.text"
EVENTS = ("insert", "delete", "update")
PG_EVENTS = (("insert", "INSERT", "NEW"), ("delete", "DELETE", "OLD"),
             ("update_old", "UPDATE", "OLD"), ("update_new", "UPDATE", "NEW"))


# --- SQLite -----------------------------------------------------------------------------------

def _sqlite_field(scene: str, field: str, expr: str) -> str:
    return (f"(SELECT group_concat(t, ' ') FROM (SELECT {expr} AS t FROM annotations a "
            f"WHERE a.scene_id = {scene} AND a.field = '{field}' ORDER BY a.position, a.id))")


def _sqlite_fill(where: str, expr: str) -> str:
    return (f"INSERT INTO scene_fts (rowid, text, labels) SELECT s.id, "
            f"{_sqlite_field('s.id', 'text', expr)}, {_sqlite_field('s.id', 'labels', expr)} FROM scenes s "
            f"WHERE {where} AND EXISTS (SELECT 1 FROM annotations a WHERE a.scene_id = s.id "
            f"AND a.field IN ('text', 'labels'))")


def _sqlite_refresh(scene: str, expr: str) -> str:
    return f"\n    DELETE FROM scene_fts WHERE rowid = {scene};\n    {_sqlite_fill(f's.id = {scene}', expr)};"


def _sqlite_triggers(expr: str) -> None:
    for name in EVENTS:
        op.execute(f"DROP TRIGGER IF EXISTS annotations_fts_{name}")
    op.execute("CREATE TRIGGER annotations_fts_insert AFTER INSERT ON annotations "
               f"WHEN new.field IS NOT NULL BEGIN{_sqlite_refresh('new.scene_id', expr)}\nEND")
    op.execute("CREATE TRIGGER annotations_fts_delete AFTER DELETE ON annotations "
               f"WHEN old.field IS NOT NULL BEGIN{_sqlite_refresh('old.scene_id', expr)}\nEND")
    op.execute("CREATE TRIGGER annotations_fts_update AFTER UPDATE ON annotations "
               "WHEN old.field IS NOT NULL OR new.field IS NOT NULL BEGIN"
               f"{_sqlite_refresh('old.scene_id', expr)}{_sqlite_refresh('new.scene_id', expr)}\nEND")


def _sqlite_rebuild(expr: str) -> None:
    op.execute("DELETE FROM scene_fts")
    op.execute(_sqlite_fill("1 = 1", expr))


# --- PostgreSQL -------------------------------------------------------------------------------

def _pg_field(field: str, expr: str) -> str:
    return (f"(SELECT string_agg({expr}, ' ' ORDER BY a.position, a.id) FROM annotations a "
            f"WHERE a.scene_id = s.id AND a.field = '{field}')")


def _pg_function(expr: str) -> str:
    return f"""
CREATE OR REPLACE FUNCTION scene_fts_refresh() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- "changed" is the trigger's transition table (the inserted, deleted or updated rows)
    INSERT INTO scene_fts (scene_id, text, labels)
    SELECT s.id, {_pg_field('text', expr)}, {_pg_field('labels', expr)}
    FROM scenes s
    WHERE s.id IN (SELECT scene_id FROM changed WHERE field IS NOT NULL)
    ON CONFLICT (scene_id) DO UPDATE SET text = EXCLUDED.text, labels = EXCLUDED.labels;
    DELETE FROM scene_fts f
    WHERE f.scene_id IN (SELECT scene_id FROM changed) AND f.text IS NULL AND f.labels IS NULL;
    RETURN NULL;
END
$$
"""


def _pg_rebuild(expr: str) -> None:
    op.execute("DELETE FROM scene_fts")
    op.execute(f"INSERT INTO scene_fts (scene_id, text, labels) SELECT s.id, {_pg_field('text', expr)}, "
               f"{_pg_field('labels', expr)} FROM scenes s WHERE EXISTS (SELECT 1 FROM annotations a "
               "WHERE a.scene_id = s.id AND a.field IN ('text', 'labels'))")


# --- both -------------------------------------------------------------------------------------

def _fill_terms() -> int:
    """Terms for the searched annotations already stored; how many got some."""
    from tvcaption.search_terms import has_cjk, index_terms

    if op.get_context().as_sql:  # offline SQL: the terms need Python; index again to get them
        return 0
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, text FROM annotations WHERE field IS NOT NULL")).all()
    updates = [{"id": row.id, "terms": index_terms(row.text)} for row in rows if has_cjk(row.text)]
    if updates:
        conn.execute(sa.text("UPDATE annotations SET terms = :terms WHERE id = :id"), updates)
    return len(updates)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    with op.batch_alter_table("annotations") as batch:
        batch.add_column(sa.Column("terms", sa.Text(), nullable=True))
    if dialect == "sqlite":
        _sqlite_triggers(WITH_TERMS)
    elif dialect == "postgresql":
        op.execute(_pg_function(WITH_TERMS))
    if _fill_terms():
        (_sqlite_rebuild if dialect == "sqlite" else _pg_rebuild)(WITH_TERMS)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":  # SQLite copies the table to drop a column: no trigger may name it then
        for name in EVENTS:
            op.execute(f"DROP TRIGGER IF EXISTS annotations_fts_{name}")
    elif dialect == "postgresql":
        op.execute(_pg_function(TEXT_ONLY))
    with op.batch_alter_table("annotations") as batch:
        batch.drop_column("terms")
    if dialect == "sqlite":
        _sqlite_triggers(TEXT_ONLY)
    (_sqlite_rebuild if dialect == "sqlite" else _pg_rebuild)(TEXT_ONLY)
