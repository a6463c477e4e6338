"""vectors: a meaning vector per scene, for search by meaning

Adds ``recording_vectors``: per recording, the ids of its scenes (int64) and their sentence
embeddings (float32, ``dim`` per scene) as two binary columns, with the embedding model's name;
deleted with the recording (foreign key, ON DELETE CASCADE) and replaced with its scenes by the
store (``tvcaption.db.vectors``). One row per recording rather than per scene: search by meaning
reads every vector, and a few large rows read many times faster than millions of small ones.
Recordings indexed before have no vectors until they are indexed again with the meaning analyser
(the analysers' identities change, so ``tvcaption index`` does that by itself).

Downgrade drops the table; nothing else refers to it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "recording_vectors",
        sa.Column("recording_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("scene_ids", sa.LargeBinary(), nullable=False),
        sa.Column("vectors", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["recording_id"], ["recordings.id"], ondelete="CASCADE",
                                name=op.f("fk_recording_vectors_recording_id_recordings")),
        sa.PrimaryKeyConstraint("recording_id", name=op.f("pk_recording_vectors")),
    )
    op.create_index(op.f("ix_recording_vectors_model"), "recording_vectors", ["model"], unique=False)


def downgrade() -> None:
    op.drop_table("recording_vectors")  # its index with it
