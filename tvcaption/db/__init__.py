"""Storage: SQLAlchemy models (schema), opening a database and its errors (engine), the Alembic
wrapper (migrate), worker identity (workers), finding a recording by path (paths), scene and
annotation rows (scenes), claims, results and reads with ``connect`` (store), and ranked
full-text search (search). Nothing is imported here, so that ``tvcaption.db.migrate`` or
``tvcaption.db.search`` load only what they need; ``migrate`` imports ``engine`` alone, and
``store`` imports both.
"""
