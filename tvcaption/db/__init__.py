"""Storage: SQLAlchemy models (schema), Alembic wrapper (migrate), reads and writes (store),
ranked full-text search (search). Nothing is imported here, so that ``tvcaption.db.migrate`` or
``tvcaption.db.search`` load only what they need.
"""
