"""hidden search field: annotations found only when asked (out-of-domain captions)

An annotation's search field may now be 'hidden' besides 'text' and 'labels': indexed, but
found only by a search that asks for hidden text (``tvcaption search --all-captions``). The
caption analyser stores a caption there when the scene lies outside the caption model's
training distribution (``tvcaption.domain``), so the scene's tags, on-screen text and speech
stay searchable while its caption does not answer ordinary searches.

- SQLite: the FTS5 table gets a third column ``hidden`` (rebuilt: FTS5 tables cannot gain
  columns); the triggers fill it; ordinary searches match only ``{text labels}``.
- PostgreSQL: ``scene_fts.hidden``; ``document`` now also holds it at weight 'C'; ordinary
  searches keep weights A and B only (``ts_filter``).

Downgrade turns hidden annotations into 'text' ones (a hidden caption becomes an ordinary one)
and restores 0004's index.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TERMS = "a.text || coalesce(' ' || a.terms, '')"
TOKENIZE = "porter unicode61 remove_diacritics 2"
EVENTS = ("insert", "delete", "update")
PG_EVENTS = (("insert", "INSERT", "NEW"), ("delete", "DELETE", "OLD"),
             ("update_old", "UPDATE", "OLD"), ("update_new", "UPDATE", "NEW"))
CHECK_NEW = "field IN ('text', 'labels', 'hidden')"
CHECK_OLD = "field IN ('text', 'labels')"


def _fields(hidden: bool) -> tuple[str, ...]:
    return ("text", "labels", "hidden") if hidden else ("text", "labels")


def _annotations(condition: str) -> sa.Table:
    """``annotations`` as 0004 left it, with the field check ``condition``: SQLite's batch copy
    reads it from here, so that ``alembic upgrade --sql`` needs no live database."""
    meta = sa.MetaData()
    sa.Table("scenes", meta, sa.Column("id", sa.Integer(), primary_key=True))
    table = sa.Table(
        "annotations", meta,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scene_id", sa.Integer(), nullable=False),
        sa.Column("analyser", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("field", sa.String(length=16), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("terms", sa.Text(), nullable=True),
        sa.CheckConstraint(condition, name="ck_annotations_field"),
        sa.ForeignKeyConstraint(["scene_id"], ["scenes.id"], ondelete="CASCADE", name="fk_annotations_scene_id_scenes"),
        sa.PrimaryKeyConstraint("id", name="pk_annotations"),
    )
    sa.Index("ix_annotations_scene_id", table.c.scene_id)
    return table


def _set_check(condition: str) -> None:
    before = CHECK_OLD if condition == CHECK_NEW else CHECK_NEW
    with op.batch_alter_table("annotations", copy_from=_annotations(before)) as batch:
        batch.drop_constraint(op.f("ck_annotations_field"), type_="check")
        batch.create_check_constraint("field", condition)


# --- SQLite -----------------------------------------------------------------------------------

def _sqlite_field(scene: str, field: str) -> str:
    return (f"(SELECT group_concat(t, ' ') FROM (SELECT {TERMS} AS t FROM annotations a "
            f"WHERE a.scene_id = {scene} AND a.field = '{field}' ORDER BY a.position, a.id))")


def _sqlite_fill(where: str, fields: tuple[str, ...]) -> str:
    values = ", ".join(_sqlite_field("s.id", f) for f in fields)
    listed = ", ".join(f"'{f}'" for f in fields)
    return (f"INSERT INTO scene_fts (rowid, {', '.join(fields)}) SELECT s.id, {values} FROM scenes s "
            f"WHERE {where} AND EXISTS (SELECT 1 FROM annotations a WHERE a.scene_id = s.id "
            f"AND a.field IN ({listed}))")


def _sqlite_refresh(scene: str, fields: tuple[str, ...]) -> str:
    return f"\n    DELETE FROM scene_fts WHERE rowid = {scene};\n    {_sqlite_fill(f's.id = {scene}', fields)};"


def _sqlite_index(fields: tuple[str, ...]) -> None:
    """Drop the triggers, recreate the FTS5 table with ``fields``, the triggers, and fill it."""
    for name in EVENTS:
        op.execute(f"DROP TRIGGER IF EXISTS annotations_fts_{name}")
    op.execute("DROP TABLE IF EXISTS scene_fts")
    op.execute(f"CREATE VIRTUAL TABLE scene_fts USING fts5({', '.join(fields)}, tokenize = '{TOKENIZE}')")
    op.execute("CREATE TRIGGER annotations_fts_insert AFTER INSERT ON annotations "
               f"WHEN new.field IS NOT NULL BEGIN{_sqlite_refresh('new.scene_id', fields)}\nEND")
    op.execute("CREATE TRIGGER annotations_fts_delete AFTER DELETE ON annotations "
               f"WHEN old.field IS NOT NULL BEGIN{_sqlite_refresh('old.scene_id', fields)}\nEND")
    op.execute("CREATE TRIGGER annotations_fts_update AFTER UPDATE ON annotations "
               "WHEN old.field IS NOT NULL OR new.field IS NOT NULL BEGIN"
               f"{_sqlite_refresh('old.scene_id', fields)}{_sqlite_refresh('new.scene_id', fields)}\nEND")
    op.execute(_sqlite_fill("1 = 1", fields))


# --- PostgreSQL -------------------------------------------------------------------------------

def _pg_field(field: str) -> str:
    return (f"(SELECT string_agg({TERMS}, ' ' ORDER BY a.position, a.id) FROM annotations a "
            f"WHERE a.scene_id = s.id AND a.field = '{field}')")


def _pg_function(fields: tuple[str, ...]) -> str:
    updates = ", ".join(f"{f} = EXCLUDED.{f}" for f in fields)
    empty = " AND ".join(f"f.{f} IS NULL" for f in fields)
    return f"""
CREATE OR REPLACE FUNCTION scene_fts_refresh() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- "changed" is the trigger's transition table (the inserted, deleted or updated rows)
    INSERT INTO scene_fts (scene_id, {', '.join(fields)})
    SELECT s.id, {', '.join(_pg_field(f) for f in fields)}
    FROM scenes s
    WHERE s.id IN (SELECT scene_id FROM changed WHERE field IS NOT NULL)
    ON CONFLICT (scene_id) DO UPDATE SET {updates};
    DELETE FROM scene_fts f
    WHERE f.scene_id IN (SELECT scene_id FROM changed) AND {empty};
    RETURN NULL;
END
$$
"""


def _pg_document(hidden: bool) -> None:
    parts = ["setweight(to_tsvector('english'::regconfig, coalesce(text, '')), 'A')",
             "setweight(to_tsvector('english'::regconfig, coalesce(labels, '')), 'B')"]
    if hidden:
        parts.append("setweight(to_tsvector('english'::regconfig, coalesce(hidden, '')), 'C')")
    op.execute("ALTER TABLE scene_fts DROP COLUMN document")  # its GIN index goes with it
    op.execute(f"ALTER TABLE scene_fts ADD COLUMN document tsvector GENERATED ALWAYS AS ({' || '.join(parts)}) STORED")
    op.execute("CREATE INDEX ix_scene_fts_document ON scene_fts USING gin (document)")


# --- both -------------------------------------------------------------------------------------

def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":  # the batch copy of annotations must not meet triggers naming it
        for name in EVENTS:
            op.execute(f"DROP TRIGGER IF EXISTS annotations_fts_{name}")
    _set_check(CHECK_NEW)
    if dialect == "sqlite":
        _sqlite_index(_fields(True))
    elif dialect == "postgresql":
        op.execute("ALTER TABLE scene_fts ADD COLUMN hidden text")
        _pg_document(True)
        op.execute(_pg_function(_fields(True)))


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name in EVENTS:
            op.execute(f"DROP TRIGGER IF EXISTS annotations_fts_{name}")
    op.execute("UPDATE annotations SET field = 'text' WHERE field = 'hidden'")
    _set_check(CHECK_OLD)
    if dialect == "sqlite":
        _sqlite_index(_fields(False))
    elif dialect == "postgresql":
        op.execute(_pg_function(_fields(False)))  # the UPDATE above already moved them into text
        _pg_document(False)
        op.execute("ALTER TABLE scene_fts DROP COLUMN hidden")
