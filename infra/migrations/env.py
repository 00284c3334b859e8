"""Alembic environment: migrations run on SQLite (batch mode) and PostgreSQL alike."""
from alembic import context

from workflow.models import Base
from workflow.uow import make_engine

config = context.config
target_metadata = Base.metadata


def run_migrations_online():
    connectable = config.attributes.get("connection")
    if connectable is not None:
        _run(connectable)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


def _run(connection):
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
