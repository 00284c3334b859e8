"""The migrations build the schema the models describe, on both databases, and go back down."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from infra.migrate import downgrade, upgrade
from workflow.models import Base


def _differences(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def test_the_migrated_schema_is_the_models_schema(database_url):
    assert _differences(database_url) == []


def test_every_migration_goes_down_and_up_again(postgres_url):
    downgrade(postgres_url, "base")
    upgrade(postgres_url)
    assert _differences(postgres_url) == []
