"""vectors version: a counter that changes whenever what search by meaning reads changes

Search by meaning keeps every vector of the archive as one contiguous matrix in a memory-mapped
file beside the user's cache (``tvcaption.db.vector_index``) instead of decoding each
recording's blob on every query; the file says which version of the vectors it holds, and this
counter (starting at a random number) tells a search whether it still matches: ``search_versions`` has one row
``('vectors', N)``, and triggers add 1 to N on every insert, update or delete of
``recording_vectors`` and on every change of a recording's ``status`` (only done recordings are
searched) or deletion of a recording (on PostgreSQL also on TRUNCATE of either table). The
counter is written in the writer's transaction, so a reader sees it change exactly when the
vectors do.

PostgreSQL: statement-level triggers calling ``search_versions_bump()``; the row's lock makes
concurrent writers of vectors queue for the end of each other's transaction (the store writes a
recording's vectors just before it commits, so the wait is short).

Downgrade drops the triggers, the function and the table.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BUMP = "UPDATE search_versions SET version = version + 1 WHERE name = 'vectors'"
# (trigger name, SQLite event, PostgreSQL event, table)
TRIGGERS = (
    ("recording_vectors_version_insert", "INSERT", "INSERT", "recording_vectors"),
    ("recording_vectors_version_update", "UPDATE", "UPDATE", "recording_vectors"),
    ("recording_vectors_version_delete", "DELETE", "DELETE", "recording_vectors"),
    ("recordings_version_status", "UPDATE OF status", "UPDATE OF status", "recordings"),
    ("recordings_version_delete", "DELETE", "DELETE", "recordings"),
    ("recording_vectors_version_truncate", None, "TRUNCATE", "recording_vectors"),  # PostgreSQL only
    ("recordings_version_truncate", None, "TRUNCATE", "recordings"),
)


def upgrade() -> None:
    op.create_table(
        "search_versions",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_search_versions")),
    )
    # a random start: a database made anew at the same path never meets the cache file of the old one
    op.execute(f"INSERT INTO search_versions (name, version) VALUES ('vectors', {secrets.randbits(48)})")
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name, event, _, table in TRIGGERS:
            if event is not None:
                op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} BEGIN {BUMP}; END")
    elif dialect == "postgresql":
        op.execute("CREATE FUNCTION search_versions_bump() RETURNS trigger LANGUAGE plpgsql AS $$ "
                   f"BEGIN {BUMP}; RETURN NULL; END $$")
        for name, _, event, table in TRIGGERS:
            op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION search_versions_bump()")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name, _, _, table in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if dialect == "postgresql" else ""))
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS search_versions_bump()")
    op.drop_table("search_versions")
