"""SQLAlchemy 2.0 typed models: the schema that ``migrations/`` creates.

The models are the source of truth for the tables; the Alembic revisions create them (never
``create_all`` outside tests) and ``tests/test_migrations.py`` checks that the two agree.
Constraint names follow one naming convention so that migrations can refer to them on both
SQLite and PostgreSQL.

The full-text index (``scene_fts``) is not a model: it is backend-specific (an FTS5 virtual
table on SQLite, a table with a generated ``tsvector`` column and a GIN index on PostgreSQL),
created by the migration ``0003_annotations`` (before it, ``0002_search`` over the former
``captions`` and ``tags`` tables) and kept in step with ``annotations`` by triggers: one row per
scene, column ``text`` (annotations whose field is 'text') and ``labels`` (field 'labels').
:func:`include_object` hides it from autogenerate.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

STATUSES = ("pending", "processing", "done", "failed")
SEARCH_TABLE = "scene_fts"  # backend-specific full-text index, see module docstring


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        dict[str, Any]: JSON,
        datetime: DateTime(timezone=True),
        str: String(),
    }


class Recording(Base):
    """One recording file: its identity (path, content hash), probe data and indexing state."""

    __tablename__ = "recordings"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'processing', 'done', 'failed')", name="status"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    content_hash: Mapped[str | None] = mapped_column(String(128), index=True)
    probe: Mapped[dict[str, Any] | None]
    duration: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), index=True, server_default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    claimed_at: Mapped[datetime | None]
    model: Mapped[str | None] = mapped_column(String(255))
    indexed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())

    scenes: Mapped[list[Scene]] = relationship(
        back_populates="recording", cascade="all, delete-orphan", passive_deletes=True,
        order_by="Scene.index",
    )


class Scene(Base):
    """A scene of a recording: seconds from the recording's first frame, end exclusive."""

    __tablename__ = "scenes"
    __table_args__ = (
        UniqueConstraint("recording_id", "index"),
        CheckConstraint('"end" >= start', name="span"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)  # 0-based position in the recording
    start: Mapped[float] = mapped_column(Float)
    end: Mapped[float] = mapped_column(Float)
    start_frame: Mapped[int] = mapped_column(Integer)
    end_frame: Mapped[int] = mapped_column(Integer)

    recording: Mapped[Recording] = relationship(back_populates="scenes")
    annotations: Mapped[list[Annotation]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="Annotation.position")


class Annotation(Base):
    """One thing an analyser said about a scene (:class:`tvcaption.scene.Annotation`), in its order.

    ``field`` is where ``text`` goes in the full-text index: 'text' (weight 1), 'labels' (weight
    0.5), 'hidden' (found only when a search asks for it, migration 0006) or NULL (stored, not
    searched). ``position`` orders a scene's annotations as the
    analysers returned them (a caption, then tags most probable first, ...). ``terms`` (migration
    0004) is indexed with ``text``: what the backends' tokenizers cannot find in it by themselves."""

    __tablename__ = "annotations"
    __table_args__ = (CheckConstraint("field IN ('text', 'labels', 'hidden')", name="field"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scene_id: Mapped[int] = mapped_column(ForeignKey("scenes.id", ondelete="CASCADE"), index=True)
    analyser: Mapped[str] = mapped_column(String(64))  # the analyser's registry name: "caption", "tags", ...
    kind: Mapped[str] = mapped_column(String(32))  # what readers select by: "caption", "tag", ...
    position: Mapped[int] = mapped_column(Integer)  # 0-based order within the scene
    text: Mapped[str] = mapped_column(Text)
    score: Mapped[float | None] = mapped_column(Float)  # the analyser's confidence, on its own scale
    field: Mapped[str | None] = mapped_column(String(16))  # search field, or NULL: not searched
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))  # JSON-able details
    # extra index terms made when stored (tvcaption.search_terms): CJK characters and pairs, simplified
    terms: Mapped[str | None] = mapped_column(Text)


class RecordingVectors(Base):
    """The meaning vectors of a recording's scenes (migration 0005, :mod:`tvcaption.db.vectors`):
    one row per recording, replaced with its scenes; ``scene_ids`` int64 and ``vectors`` float32
    (rows of ``dim``), little-endian, in the same order; ``model`` names the embedding model."""

    __tablename__ = "recording_vectors"

    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id", ondelete="CASCADE"), primary_key=True)
    model: Mapped[str] = mapped_column(String(64), index=True)
    dim: Mapped[int] = mapped_column(Integer)
    scene_ids: Mapped[bytes] = mapped_column(LargeBinary)
    vectors: Mapped[bytes] = mapped_column(LargeBinary)


class SearchVersion(Base):
    """Counters that triggers advance when what a search caches changes (migration 0007):
    ``('vectors', N)`` for :mod:`tvcaption.db.vector_index`."""

    __tablename__ = "search_versions"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)


class SearchChange(Base):
    """For each counter of :class:`SearchVersion`, each recording's last change of what that
    search caches: the counter's value after it (migration 0009; triggers write it). A cache at
    version V reads the recordings changed after V from the database beside it; recording 0
    means every recording (PostgreSQL's TRUNCATE)."""

    __tablename__ = "search_changes"
    __table_args__ = (Index("ix_search_changes_name_version", "name", "version"),)

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    recording_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger)


class Model(Base):
    """A captioning model that indexed recordings (checkpoint name, sha256, metadata)."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    sha256: Mapped[str | None] = mapped_column(String(64))
    meta: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic autogenerate filter: leave the backend-specific search index to its migration."""
    if type_ == "table" and name and (name == SEARCH_TABLE or name.startswith(SEARCH_TABLE + "_")):
        return False
    return True
