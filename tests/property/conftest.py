"""Resources shared by the property tests, built once per session: hypothesis runs many examples
inside one test function, so examples copy what they change (a database file) or reset it
(``import_database``, the one function-scoped fixture)."""
from __future__ import annotations

import shutil
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select

from infra.migrate import upgrade
from tests.support.report import VALID_ANSWERS
from tests.support.servers import PostgresServer, smtp_server
from tests.support.strategies import load_shipped_template
from workflow.cycles import open_cycle
from workflow.models import Submission
from workflow.partners import ensure_programme, import_partners
from workflow.report_templates import load_template
from workflow.reporting import save_draft, submit_report
from workflow.requests import request_extension
from workflow.uow import Database

HEADER = ("name,kind,contact_name,contact_email,deputy_email,head_name,head_email,language,"
          "joined_on,employees,group")
SEED_CSV = "\n".join([
    HEADER,
    "Partner 00001,Kommune,Kontakt 1,p1@example.org,d1@example.org,Leitung 1,h1@example.org,de,"
    "2019-01-01,1200,",
    "Partner 00002,Verband,Kontakt 2,p2@example.org,,,,en,,,",
    "Stadt Solingen,Kommune,Kontakt 3,p3@example.org,,,,de,,,",
    "Kooperation Ruhr,Kooperation,Nesrin Aksoy,koop@example.org,,,,de,2013-07-09,,",
    "Stadt Bochum,Kommune,Derya Şahin,bochum@example.org,,,,de,,6500,Kooperation Ruhr",
    "Stadt Herne,Kommune,Ebru Koç,herne@example.org,,,,en,,,Kooperation Ruhr",
]) + "\n"
OPENED_AT = datetime(2027, 2, 1, 6, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def smtp_session():
    """One aiosmtpd for the whole session (the function-scoped ``smtp`` fixture would be shared
    by all examples of a test anyway)."""
    with smtp_server() as (controller, handler):
        yield controller, handler


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory):
    """An empty, migrated SQLite file to copy."""
    path = tmp_path_factory.mktemp("property-db") / "migrated.sqlite"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_migrated():
    """A throwaway PostgreSQL cluster with one migrated database (fails loudly, never skips)."""
    server = PostgresServer().start()
    try:
        url = server.url("postgres")
        upgrade(url)
        yield url
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def import_database(request, tmp_path):
    """A migrated database on each backend; examples reset the partner tables themselves."""
    if request.param == "sqlite":
        target = tmp_path / "import.sqlite"
        shutil.copy(request.getfixturevalue("migrated_sqlite"), target)
        database = Database(f"sqlite:///{target}")
    else:
        database = Database(request.getfixturevalue("postgres_migrated"))
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def seeded_sqlite(tmp_path_factory, migrated_sqlite):
    """A database as a coordinator has it in March: six partners (one group with two members),
    the shipped form, the 2027 cycle open, one report submitted, one extension request pending,
    mails planned and queued (nothing sent)."""
    path = tmp_path_factory.mktemp("property-db") / "seeded.sqlite"
    shutil.copy(migrated_sqlite, path)
    database = Database(f"sqlite:///{path}")
    try:
        with database.unit_of_work() as uow:
            programme = ensure_programme(uow, coordinator_emails=("koordination@example.org",))
            import_partners(uow, programme, SEED_CSV)
            load_template(uow, programme, load_shipped_template())
            open_cycle(uow, programme, 2027, now=OPENED_AT, opens_on=date(2027, 2, 1),
                       due_on=date(2027, 4, 30))
            uow.commit()
        with database.unit_of_work() as uow:
            first, second = uow.session.scalars(
                select(Submission.id).order_by(Submission.id).limit(2)).all()
            save_draft(uow, first, VALID_ANSWERS, expected_version=0, now=OPENED_AT,
                       actor="partner")
            submit_report(uow, first, expected_version=1, now=OPENED_AT, actor="partner")
            request_extension(uow, second, reason="Personalwechsel", proposed_due=date(2027, 6, 1),
                              now=OPENED_AT, actor="partner")
            uow.commit()
    finally:
        database.dispose()
    return path
