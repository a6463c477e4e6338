"""Alembic environment for tvcaption (SQLite and PostgreSQL).

Driven programmatically by ``tvcaption.db.migrate``, which passes an open connection (already in
a transaction) through ``config.attributes["connection"]``. The plain ``alembic`` command works
too when ``sqlalchemy.url`` is set (``alembic -x`` is not needed).
"""

from __future__ import annotations

from alembic import context

from tvcaption.db.schema import Base, include_object

config = context.config
target_metadata = Base.metadata
OPTIONS = dict(
    target_metadata=target_metadata,
    include_object=include_object,
    render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
    compare_type=True,
    transactional_ddl=True,  # SQLite DDL is transactional once pysqlite stops autocommitting (store.py)
)


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True, **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def _run(connection) -> None:
    context.configure(connection=connection, **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from tvcaption.db.store import connect

    engine = connect(config.get_main_option("sqlalchemy.url"), migrate=False)
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
