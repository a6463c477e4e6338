"""annotations: every analyser's output in one table; the search index over it

``captions`` and ``tags`` become rows of ``annotations`` (analyser, kind, position within the
scene, text, score, search field, JSON data): a caption is analyser "caption", kind "caption",
field 'text'; a tag is analyser "tags", kind "tag", field 'labels', after the scene's captions in
the order readers used (score descending, then id). The full-text index ``scene_fts`` is
rebuilt over annotations: one row per scene, column ``text`` (field 'text', in position order;
weight 1 / 'A') and ``labels`` (field 'labels'; weight 0.5 / 'B'), kept in step by triggers on
``annotations`` inside the writing transaction. Then ``captions`` and ``tags`` are dropped.

- SQLite: FTS5 virtual table ``scene_fts(text, labels)``, rowid = scene id, porter stemmer over
  unicode61 (diacritics folded); row triggers (only for searched annotations) refresh the
  scene's index row.
- PostgreSQL: table ``scene_fts(scene_id, text, labels, document)``, ``document`` a generated
  ``tsvector`` ('english') with a GIN index; statement triggers with transition tables refresh
  the touched scenes once per statement.

Downgrade restores revision 0002: captions from kind 'caption' (model: the recording's), tags
from kind 'tag' (score NULL becomes 0), 0002's index and triggers. Annotations of other kinds
(on-screen text, speech, ...) have no place there and are dropped.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIELDS = ("text", "labels")  # the index's columns, named after the annotations' search field
TOKENIZE = "porter unicode61 remove_diacritics 2"


def _create_annotations() -> None:
    op.create_table(
        "annotations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scene_id", sa.Integer(), nullable=False),
        sa.Column("analyser", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("field", sa.String(length=16), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.CheckConstraint("field IN ('text', 'labels')", name=op.f("ck_annotations_field")),
        sa.ForeignKeyConstraint(["scene_id"], ["scenes.id"], ondelete="CASCADE",
                                name=op.f("fk_annotations_scene_id_scenes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annotations")),
    )
    op.create_index(op.f("ix_annotations_scene_id"), "annotations", ["scene_id"])


# Captions first (by id), then tags by score descending, then id: positions 0, 1, ... per scene.
COPY_UP = """
INSERT INTO annotations (scene_id, analyser, kind, position, text, score, field)
SELECT scene_id, analyser, kind, position, text, score, field FROM (
    SELECT c.scene_id, 'caption' AS analyser, 'caption' AS kind,
           ROW_NUMBER() OVER (PARTITION BY c.scene_id ORDER BY c.id) - 1 AS position,
           c.text, c.score, 'text' AS field
    FROM captions c
    UNION ALL
    SELECT t.scene_id, 'tags', 'tag',
           (SELECT count(*) FROM captions c WHERE c.scene_id = t.scene_id)
             + ROW_NUMBER() OVER (PARTITION BY t.scene_id ORDER BY t.score DESC, t.id) - 1,
           t.label, t.score, 'labels'
    FROM tags t
) copied
ORDER BY scene_id, position
"""


def _copy_down() -> None:
    """Captions and tags back from their annotations (the caption's model is the recording's)."""
    op.execute("INSERT INTO captions (scene_id, text, model, score) "
               "SELECT a.scene_id, a.text, coalesce(r.model, ''), a.score FROM annotations a "
               "JOIN scenes s ON s.id = a.scene_id JOIN recordings r ON r.id = s.recording_id "
               "WHERE a.kind = 'caption' ORDER BY a.scene_id, a.position, a.id")
    op.execute("INSERT INTO tags (scene_id, label, score) "
               "SELECT scene_id, text, coalesce(score, 0) FROM annotations "
               "WHERE kind = 'tag' ORDER BY scene_id, position, id")


# --- SQLite -----------------------------------------------------------------------------------

def _sqlite_field(scene: str, field: str) -> str:
    return (f"(SELECT group_concat(text, ' ') FROM (SELECT text FROM annotations "
            f"WHERE scene_id = {scene} AND field = '{field}' ORDER BY position, id))")


def _sqlite_fill(where: str) -> str:
    """INSERT of the index rows of the scenes ``s`` that ``where`` selects and that have searched annotations."""
    return (f"INSERT INTO scene_fts (rowid, text, labels) SELECT s.id, "
            f"{_sqlite_field('s.id', 'text')}, {_sqlite_field('s.id', 'labels')} FROM scenes s "
            f"WHERE {where} AND EXISTS (SELECT 1 FROM annotations a WHERE a.scene_id = s.id "
            f"AND a.field IN ('text', 'labels'))")


def _sqlite_refresh(scene: str) -> str:
    """Statements that rebuild the index row of scene id ``scene`` (an SQL expression)."""
    return f"\n    DELETE FROM scene_fts WHERE rowid = {scene};\n    {_sqlite_fill(f's.id = {scene}')};"


def _upgrade_sqlite() -> None:
    for table in ("captions", "tags"):  # 0002's triggers; they would go with their tables anyway
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_fts_{name}")
    op.execute("DROP TABLE scene_fts")  # scenes_fts_delete (0002) stays: it names the table, not its columns
    op.execute(f"CREATE VIRTUAL TABLE scene_fts USING fts5(text, labels, tokenize = '{TOKENIZE}')")
    # only annotations with a search field touch the index: stored-only ones cost nothing there
    op.execute("CREATE TRIGGER annotations_fts_insert AFTER INSERT ON annotations "
               f"WHEN new.field IS NOT NULL BEGIN{_sqlite_refresh('new.scene_id')}\nEND")
    op.execute("CREATE TRIGGER annotations_fts_delete AFTER DELETE ON annotations "
               f"WHEN old.field IS NOT NULL BEGIN{_sqlite_refresh('old.scene_id')}\nEND")
    op.execute("CREATE TRIGGER annotations_fts_update AFTER UPDATE ON annotations "
               "WHEN old.field IS NOT NULL OR new.field IS NOT NULL BEGIN"
               f"{_sqlite_refresh('old.scene_id')}{_sqlite_refresh('new.scene_id')}\nEND")
    op.execute(_sqlite_fill("1 = 1"))


def _downgrade_sqlite() -> None:
    for name in ("insert", "delete", "update"):
        op.execute(f"DROP TRIGGER IF EXISTS annotations_fts_{name}")
    op.execute("DROP TRIGGER IF EXISTS scenes_fts_delete")  # 0002's upgrade creates it again
    op.execute("DROP TABLE scene_fts")


# --- PostgreSQL -------------------------------------------------------------------------------

def _pg_field(field: str) -> str:
    return (f"(SELECT string_agg(a.text, ' ' ORDER BY a.position, a.id) FROM annotations a "
            f"WHERE a.scene_id = s.id AND a.field = '{field}')")


PG_REFRESH = f"""
CREATE FUNCTION scene_fts_refresh() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- "changed" is the trigger's transition table (the inserted, deleted or updated rows)
    INSERT INTO scene_fts (scene_id, text, labels)
    SELECT s.id, {_pg_field('text')}, {_pg_field('labels')}
    FROM scenes s
    WHERE s.id IN (SELECT scene_id FROM changed WHERE field IS NOT NULL)
    ON CONFLICT (scene_id) DO UPDATE SET text = EXCLUDED.text, labels = EXCLUDED.labels;
    DELETE FROM scene_fts f
    WHERE f.scene_id IN (SELECT scene_id FROM changed) AND f.text IS NULL AND f.labels IS NULL;
    RETURN NULL;
END
$$
"""
PG_EVENTS = (("insert", "INSERT", "NEW"), ("delete", "DELETE", "OLD"),
             ("update_old", "UPDATE", "OLD"), ("update_new", "UPDATE", "NEW"))


def _upgrade_postgresql() -> None:
    for table in ("captions", "tags"):
        for name, _event, _rows in PG_EVENTS:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_fts_{name} ON {table}")
    op.execute("DROP FUNCTION scene_fts_refresh()")
    op.execute("DROP TABLE scene_fts")
    op.execute("""
        CREATE TABLE scene_fts (
            scene_id integer NOT NULL,
            text text,
            labels text,
            document tsvector GENERATED ALWAYS AS (
                setweight(to_tsvector('english'::regconfig, coalesce(text, '')), 'A') ||
                setweight(to_tsvector('english'::regconfig, coalesce(labels, '')), 'B')
            ) STORED,
            CONSTRAINT pk_scene_fts PRIMARY KEY (scene_id),
            CONSTRAINT fk_scene_fts_scene_id_scenes FOREIGN KEY (scene_id)
                REFERENCES scenes (id) ON DELETE CASCADE
        )""")
    op.execute("CREATE INDEX ix_scene_fts_document ON scene_fts USING gin (document)")
    op.execute(PG_REFRESH)
    # transition tables need one trigger per event; an UPDATE refreshes old and new scenes
    for name, event, rows in PG_EVENTS:
        op.execute(f"CREATE TRIGGER annotations_fts_{name} AFTER {event} ON annotations "
                   f"REFERENCING {rows} TABLE AS changed "
                   "FOR EACH STATEMENT EXECUTE FUNCTION scene_fts_refresh()")
    op.execute(f"INSERT INTO scene_fts (scene_id, text, labels) SELECT s.id, {_pg_field('text')}, "
               f"{_pg_field('labels')} FROM scenes s WHERE EXISTS (SELECT 1 FROM annotations a "
               "WHERE a.scene_id = s.id AND a.field IN ('text', 'labels'))")


def _downgrade_postgresql() -> None:
    for name, _event, _rows in PG_EVENTS:
        op.execute(f"DROP TRIGGER IF EXISTS annotations_fts_{name} ON annotations")
    op.execute("DROP FUNCTION scene_fts_refresh()")
    op.execute("DROP TABLE scene_fts")


# --- the revision -----------------------------------------------------------------------------

def _dialect() -> str:
    dialect = op.get_context().dialect.name
    if dialect not in ("sqlite", "postgresql"):
        raise NotImplementedError(f"full-text search is not implemented for {dialect}")
    return dialect


def upgrade() -> None:
    dialect = _dialect()
    _create_annotations()
    op.execute(COPY_UP)
    if dialect == "sqlite":
        _upgrade_sqlite()
    else:
        _upgrade_postgresql()
    op.drop_table("tags")  # drops the tables' indexes with them
    op.drop_table("captions")


def downgrade() -> None:
    dialect = _dialect()
    if dialect == "sqlite":
        _downgrade_sqlite()
    else:
        _downgrade_postgresql()
    _recreate_0001_tables()
    _copy_down()
    _reindex_0002()
    op.drop_table("annotations")


def _recreate_0001_tables() -> None:
    """``captions`` and ``tags`` as revision 0001 created them."""
    op.create_table(
        "captions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scene_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["scene_id"], ["scenes.id"], ondelete="CASCADE",
                                name=op.f("fk_captions_scene_id_scenes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_captions")),
    )
    op.create_index(op.f("ix_captions_scene_id"), "captions", ["scene_id"])
    op.create_table(
        "tags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scene_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["scene_id"], ["scenes.id"], ondelete="CASCADE",
                                name=op.f("fk_tags_scene_id_scenes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tags")),
    )
    op.create_index(op.f("ix_tags_label"), "tags", ["label"])
    op.create_index(op.f("ix_tags_scene_id"), "tags", ["scene_id"])


def _reindex_0002() -> None:
    """Revision 0002's index, its triggers and its rows, from its own module (one definition)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).with_name("0002_search.py")
    spec = importlib.util.spec_from_file_location("tvcaption_migration_0002", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.upgrade()
