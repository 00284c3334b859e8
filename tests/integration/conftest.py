"""Real PostgreSQL and SQLite (migrated once, copied per test), a real SMTP server, Redis."""
from __future__ import annotations

import itertools
from contextlib import contextmanager
import shutil
from datetime import date, datetime, time

import psycopg
import pytest

from reportcycles.bootstrap import build
from infra.migrate import upgrade
from infra.settings import Settings
from tests.support.report import load_shipped_template
from tests.support.servers import PostgresServer, RedisServer, smtp_server
from workflow.partners import ensure_programme, import_partners
from workflow.policy import ReportingPolicy

_counter = itertools.count()


@pytest.fixture(scope="session")
def postgres():
    server = PostgresServer().start()
    with psycopg.connect(server.url().replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("CREATE DATABASE rc_template")
    upgrade(server.url("rc_template"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    path = tmp_path_factory.mktemp("sqlite") / "template.sqlite"
    upgrade(f"sqlite:///{path}")
    return path


@contextmanager
def fresh_postgres_database(server):
    """A new database cloned from the migrated template; dropped afterwards."""
    name = f"rc_test_{next(_counter)}"
    admin = server.url().replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE rc_template")
    try:
        yield server.url(name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        target = tmp_path / "test.sqlite"
        shutil.copy(template, target)
        yield f"sqlite:///{target}"
        return
    with fresh_postgres_database(request.getfixturevalue("postgres")) as url:
        yield url


@pytest.fixture
def postgres_url(postgres):
    with fresh_postgres_database(postgres) as url:
        yield url


@pytest.fixture
def smtp():
    with smtp_server() as (controller, handler):
        yield controller, handler


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


def make_settings(monkeypatch, tmp_path, database_url, smtp_port, broker="memory://", **extra):
    env = {"DATABASE_URL": database_url, "CELERY_BROKER_URL": broker,
           "SMTP_URL": f"smtp://127.0.0.1:{smtp_port}", "BASE_URL": "http://127.0.0.1:8000",
           "INSTANCE_PATH": str(tmp_path / "instance"), "SECRET_KEY": "test-secret",
           "COORDINATOR_EMAILS": "koordination@example.org", **extra}
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    return Settings.from_env(), {k: str(v) for k, v in env.items()}


@pytest.fixture
def services(monkeypatch, tmp_path, database_url, smtp):
    """Application services that send over the real SMTP server, in this process after commit."""
    settings, _ = make_settings(monkeypatch, tmp_path, database_url, smtp[0].port)
    built = build(settings, "inline")
    yield built
    built.database.dispose()


DEFAULT_POLICY = ReportingPolicy()


def partner_csv(count: int, *, languages=("de",)) -> str:
    lines = ["name,kind,contact_name,contact_email,deputy_email,head_name,head_email,language,"
             "joined_on"]
    kinds = ["Kommune", "Kreis", "Behörde", "Polizei", "Jobcenter", "Verband", "Unternehmen"]
    for n in range(count):
        lang = languages[n % len(languages)]
        lines.append(f"Partner {n:05d},{kinds[n % len(kinds)]},Kontakt {n},p{n}@example.org,"
                     f"d{n}@example.org,Leitung {n},h{n}@example.org,{lang},2019-01-01")
    return "\n".join(lines) + "\n"


def seed_programme(services, partners: int = 30, policy: ReportingPolicy = DEFAULT_POLICY):
    with services.database.unit_of_work() as uow:
        programme = ensure_programme(uow, policy=policy,
                                     coordinator_emails=("koordination@example.org",))
        import_partners(uow, programme, partner_csv(partners, languages=("de", "de", "en")))
        load_shipped_template(uow, programme)
        uow.commit()
        return programme.id


def berlin(day: date, hour: int = 8, minute: int = 30) -> datetime:
    from zoneinfo import ZoneInfo
    return datetime.combine(day, time(hour, minute), tzinfo=ZoneInfo("Europe/Berlin"))
