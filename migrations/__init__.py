"""Alembic migrations, shipped in the package as ``tvcaption.resources.migrations`` (run by tvcaption.db.migrate)."""
