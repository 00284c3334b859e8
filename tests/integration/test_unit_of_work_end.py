"""How a unit of work left without commit ends, on SQLite and PostgreSQL: whatever it wrote is
undone, whether by the ORM, a Core statement or SQL text; its after-commit work never runs and
its clean-up does. On PostgreSQL one that only read ends with COMMIT, which keeps psycopg's
prepared statements (a ROLLBACK makes psycopg deallocate them all)."""
from __future__ import annotations

import pytest
from sqlalchemy import select, text, update

from tests.integration.conftest import seed_programme
from workflow.models import Partner


def partner_names(services) -> list[str]:
    with services.database.unit_of_work() as uow:
        return list(uow.session.scalars(select(Partner.name).order_by(Partner.id)))


def test_writes_left_without_commit_are_undone_however_they_were_made(services):
    seed_programme(services, partners=3)
    before = partner_names(services)
    with services.database.unit_of_work() as uow:
        uow.session.scalars(select(Partner)).all()[0].name = "Nur im Speicher"  # pending
    with services.database.unit_of_work() as uow:
        uow.session.scalars(select(Partner)).all()[1].name = "Geschrieben"
        uow.session.flush()
        uow.session.scalars(select(Partner.id)).all()  # only reads after the write
    with services.database.unit_of_work() as uow:
        uow.session.execute(update(Partner).values(name=Partner.name + " Core"))
    with services.database.unit_of_work() as uow:
        uow.session.execute(text("UPDATE partner SET name = name || ' Text'"))
        uow.session.execute(text("SELECT 1"))
    assert partner_names(services) == before


def test_a_unit_of_work_that_only_read_drops_its_after_commit_work_and_cleans_up(services):
    seed_programme(services, partners=1)
    happened = []
    with services.database.unit_of_work() as uow:
        uow.session.scalars(select(Partner.name)).all()
        uow.after_commit(lambda: happened.append("after commit"))
        uow.on_rollback(lambda: happened.append("clean-up"))
    assert happened == ["clean-up"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # psycopg's cache
def test_reading_in_units_of_work_keeps_the_prepared_statements(services):
    seed_programme(services, partners=2)
    services.database.engine.dispose()
    for _ in range(8):  # psycopg prepares a statement at its fifth execution
        with services.database.unit_of_work() as uow:
            uow.session.scalars(select(Partner.name).where(Partner.id > 0)).all()
    with services.database.unit_of_work() as uow:
        prepared = uow.session.scalars(text(
            "SELECT statement FROM pg_prepared_statements WHERE statement LIKE '%partner.name%'"
        )).all()
    assert len(prepared) == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SELECT … INTO
def test_sql_text_counts_as_a_write_even_when_it_begins_with_select(services):
    seed_programme(services, partners=1)
    with services.database.unit_of_work() as uow:
        uow.session.execute(text("SELECT name INTO left_behind FROM partner"))
    with services.database.unit_of_work() as uow:
        assert uow.session.scalar(text("SELECT to_regclass('left_behind')")) is None
