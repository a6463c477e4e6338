"""full-text search index over captions and tags (FTS5 on SQLite, tsvector + GIN on PostgreSQL)

One index row per scene holds the scene's caption text and its tag labels; triggers on
``captions`` and ``tags`` keep it in step inside the writing transaction, so a search never
sees half of a saved recording. Upgrading fills the index from the rows already there.

- SQLite: FTS5 virtual table ``scene_fts(caption, tags)``, rowid = scene id, porter stemmer
  over unicode61 (diacritics folded); row triggers refresh the scene's index row.
- PostgreSQL: table ``scene_fts(scene_id, caption, tags, document)`` where ``document`` is a
  generated ``tsvector`` ('english' config: stemming and stop words; caption weight A, tags B)
  with a GIN index; statement triggers with transition tables refresh the touched scenes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, indexed column) pairs whose changes refresh the scene's index row
SOURCES = (("captions", "text"), ("tags", "label"))


def _sqlite_refresh(scene: str) -> str:
    """Statements that rebuild the index row of scene id ``scene`` (an SQL expression)."""
    return f"""
    DELETE FROM scene_fts WHERE rowid = {scene};
    INSERT INTO scene_fts (rowid, caption, tags)
    SELECT s.id,
           (SELECT group_concat(text, ' ') FROM (SELECT text FROM captions WHERE scene_id = s.id ORDER BY id)),
           (SELECT group_concat(label, ' ') FROM (SELECT label FROM tags WHERE scene_id = s.id ORDER BY id))
    FROM scenes s
    WHERE s.id = {scene}
      AND (EXISTS (SELECT 1 FROM captions WHERE scene_id = s.id) OR EXISTS (SELECT 1 FROM tags WHERE scene_id = s.id));"""


def _upgrade_sqlite() -> None:
    op.execute("CREATE VIRTUAL TABLE scene_fts USING fts5("
               "caption, tags, tokenize = 'porter unicode61 remove_diacritics 2')")
    for table, _column in SOURCES:
        op.execute(f"CREATE TRIGGER {table}_fts_insert AFTER INSERT ON {table} BEGIN"
                   f"{_sqlite_refresh('new.scene_id')}\nEND")
        op.execute(f"CREATE TRIGGER {table}_fts_delete AFTER DELETE ON {table} BEGIN"
                   f"{_sqlite_refresh('old.scene_id')}\nEND")
        op.execute(f"CREATE TRIGGER {table}_fts_update AFTER UPDATE ON {table} BEGIN"
                   f"{_sqlite_refresh('old.scene_id')}{_sqlite_refresh('new.scene_id')}\nEND")
    # a deleted scene's captions and tags go by cascade (whose triggers clean up); this catches the rest
    op.execute("CREATE TRIGGER scenes_fts_delete AFTER DELETE ON scenes BEGIN "
               "DELETE FROM scene_fts WHERE rowid = old.id; END")
    op.execute("INSERT INTO scene_fts (rowid, caption, tags) SELECT s.id, "
               "(SELECT group_concat(text, ' ') FROM (SELECT text FROM captions WHERE scene_id = s.id ORDER BY id)), "
               "(SELECT group_concat(label, ' ') FROM (SELECT label FROM tags WHERE scene_id = s.id ORDER BY id)) "
               "FROM scenes s WHERE EXISTS (SELECT 1 FROM captions WHERE scene_id = s.id) "
               "OR EXISTS (SELECT 1 FROM tags WHERE scene_id = s.id)")


PG_REFRESH = """
CREATE FUNCTION scene_fts_refresh() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- "changed" is the trigger's transition table (the inserted, deleted or updated rows)
    INSERT INTO scene_fts (scene_id, caption, tags)
    SELECT s.id,
           (SELECT string_agg(c.text, ' ' ORDER BY c.id) FROM captions c WHERE c.scene_id = s.id),
           (SELECT string_agg(t.label, ' ' ORDER BY t.id) FROM tags t WHERE t.scene_id = s.id)
    FROM scenes s
    WHERE s.id IN (SELECT scene_id FROM changed)
    ON CONFLICT (scene_id) DO UPDATE SET caption = EXCLUDED.caption, tags = EXCLUDED.tags;
    DELETE FROM scene_fts f
    WHERE f.scene_id IN (SELECT scene_id FROM changed) AND f.caption IS NULL AND f.tags IS NULL;
    RETURN NULL;
END
$$
"""


def _upgrade_postgresql() -> None:
    op.execute("""
        CREATE TABLE scene_fts (
            scene_id integer NOT NULL,
            caption text,
            tags text,
            document tsvector GENERATED ALWAYS AS (
                setweight(to_tsvector('english'::regconfig, coalesce(caption, '')), 'A') ||
                setweight(to_tsvector('english'::regconfig, coalesce(tags, '')), 'B')
            ) STORED,
            CONSTRAINT pk_scene_fts PRIMARY KEY (scene_id),
            CONSTRAINT fk_scene_fts_scene_id_scenes FOREIGN KEY (scene_id)
                REFERENCES scenes (id) ON DELETE CASCADE
        )""")
    op.execute("CREATE INDEX ix_scene_fts_document ON scene_fts USING gin (document)")
    op.execute(PG_REFRESH)
    # transition tables need one trigger per event; an UPDATE refreshes old and new scenes
    for table, _column in SOURCES:
        for name, event, rows in (("insert", "INSERT", "NEW"), ("delete", "DELETE", "OLD"),
                                  ("update_old", "UPDATE", "OLD"), ("update_new", "UPDATE", "NEW")):
            op.execute(f"CREATE TRIGGER {table}_fts_{name} AFTER {event} ON {table} "
                       f"REFERENCING {rows} TABLE AS changed "
                       "FOR EACH STATEMENT EXECUTE FUNCTION scene_fts_refresh()")
    op.execute("INSERT INTO scene_fts (scene_id, caption, tags) SELECT s.id, "
               "(SELECT string_agg(c.text, ' ' ORDER BY c.id) FROM captions c WHERE c.scene_id = s.id), "
               "(SELECT string_agg(t.label, ' ' ORDER BY t.id) FROM tags t WHERE t.scene_id = s.id) "
               "FROM scenes s WHERE EXISTS (SELECT 1 FROM captions c WHERE c.scene_id = s.id) "
               "OR EXISTS (SELECT 1 FROM tags t WHERE t.scene_id = s.id)")


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "sqlite":
        _upgrade_sqlite()
    elif dialect == "postgresql":
        _upgrade_postgresql()
    else:
        raise NotImplementedError(f"full-text search is not implemented for {dialect}")


def downgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "sqlite":
        for table, _column in SOURCES:
            for name in ("insert", "delete", "update"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_fts_{name}")
        op.execute("DROP TRIGGER IF EXISTS scenes_fts_delete")
        op.execute("DROP TABLE IF EXISTS scene_fts")
    elif dialect == "postgresql":
        for table, _column in SOURCES:
            for name in ("insert", "delete", "update_old", "update_new"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_fts_{name} ON {table}")
        op.execute("DROP FUNCTION IF EXISTS scene_fts_refresh()")
        op.execute("DROP TABLE IF EXISTS scene_fts")
