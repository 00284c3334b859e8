"""The migrations build the schema the models describe, on both databases, and go back down;
the references they keep that the models cannot declare."""
from __future__ import annotations

from datetime import date

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import IntegrityError

from infra.migrate import downgrade, upgrade
from tests.integration.conftest import seed_programme
from tests.integration.test_cycle_engine import open_2027
from workflow.models import Base, Cycle, Notification


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


# The ledger's references, as the migrated schema keeps them on both databases.

def _opened_cycle_and_another(services):
    seed_programme(services, partners=2)
    cycle_id = open_2027(services)
    with services.database.unit_of_work() as uow:
        other = Cycle(programme_id=uow.session.get(Cycle, cycle_id).programme_id, year=2028,
                      opens_on=date(2028, 2, 1), due_on=date(2028, 4, 28), state="planned")
        uow.session.add(other)
        uow.commit()
        return cycle_id, other.id


def _ledger_row(services, **where):
    with services.database.unit_of_work() as uow:
        return uow.session.scalars(select(Notification.id).filter_by(**where)).first()


def _changing_it_is_refused(services, statement, **values):
    with services.database.unit_of_work() as uow:
        with pytest.raises(IntegrityError):
            uow.session.execute(text(statement), values)


def test_a_ledger_row_about_a_submission_belongs_to_that_submissions_cycle(services):
    cycle_id, other_id = _opened_cycle_and_another(services)
    row = _ledger_row(services, cycle_id=cycle_id, rung="invitation")
    assert row is not None
    _changing_it_is_refused(services, "UPDATE notification SET cycle_id = :other WHERE id = :id",
                            other=other_id, id=row)


def test_a_ledger_row_about_the_whole_cycle_needs_that_cycle(services):
    cycle_id, _ = _opened_cycle_and_another(services)
    notice = _ledger_row(services, cycle_id=cycle_id, submission_id=None)
    assert notice is not None
    _changing_it_is_refused(services, "UPDATE notification SET cycle_id = 999 WHERE id = :id",
                            id=notice)
    _changing_it_is_refused(
        services, "INSERT INTO notification (cycle_id, dedupe_key, rung, email, audience, seq, "
        "escalation_level, flags_non_reporting, needs_open_report, due_at, status, attempts, "
        "takeovers, created_at) SELECT 999, 'c999:test', rung, email, audience, seq, "
        "escalation_level, flags_non_reporting, needs_open_report, due_at, status, attempts, "
        "takeovers, created_at FROM notification WHERE id = :id", id=notice)


def _only_notices_left(services):
    with services.database.unit_of_work() as uow:
        uow.session.execute(text("DELETE FROM notification WHERE submission_id IS NOT NULL"))
        uow.session.execute(text("DELETE FROM member_part"))
        uow.session.execute(text("DELETE FROM event"))
        uow.session.execute(text("DELETE FROM submission"))
        uow.commit()


def test_a_cycle_with_ledger_rows_about_it_is_neither_deleted_nor_renumbered(services):
    cycle_id, other_id = _opened_cycle_and_another(services)
    _only_notices_left(services)
    assert _ledger_row(services, cycle_id=cycle_id, submission_id=None) is not None
    _changing_it_is_refused(services, "DELETE FROM cycle WHERE id = :id", id=cycle_id)
    _changing_it_is_refused(services, "UPDATE cycle SET id = 999 WHERE id = :id", id=cycle_id)
    with services.database.unit_of_work() as uow:
        uow.session.execute(text("UPDATE cycle SET id = id WHERE id = :id"), {"id": cycle_id})
        uow.session.execute(text("UPDATE cycle SET id = 999 WHERE id = :id"), {"id": other_id})
        uow.session.execute(text("DELETE FROM cycle WHERE id = 999"))
        uow.commit()


def test_the_ledger_keeps_its_rows_through_migration_0012_down_and_up(services, database_url):
    cycle_id, _ = _opened_cycle_and_another(services)
    counted = select(Notification.cycle_id, Notification.submission_id, Notification.rung,
                     Notification.status).order_by(Notification.id)
    with services.database.unit_of_work() as uow:
        before = uow.session.execute(counted).all()
    services.database.dispose()
    downgrade(database_url, "0011")
    upgrade(database_url)
    with services.database.unit_of_work() as uow:
        assert uow.session.execute(counted).all() == before
    assert _differences(database_url) == []
    notice = _ledger_row(services, cycle_id=cycle_id, submission_id=None)
    _changing_it_is_refused(services, "UPDATE notification SET cycle_id = 999 WHERE id = :id",
                            id=notice)
    _only_notices_left(services)
    _changing_it_is_refused(services, "DELETE FROM cycle WHERE id = :id", id=cycle_id)
