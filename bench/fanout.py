"""Fan-out and sweep cost at 20,000 partners, as ratios against baselines measured in this run.

Real parts: a throwaway PostgreSQL, a Redis broker, a `celery worker` process and an aiosmtpd
server, all on loopback. Run with `make bench` (or `.venv/bin/python bench/fanout.py`).

1. Raw SMTP baseline: one smtplib connection pushing N small mails into the same server.
2. reportcycles: open a cycle for N partners, sweep (queue N invitations), worker delivers them;
   the ratio is reportcycles' wall time over the raw baseline.
3. Sweep cost: a sweep with nothing due on the N-partner table against the same on a 30-partner
   table (should stay near 1: the cost follows what is due, not the table size).
"""
from __future__ import annotations

import os
import smtplib
import sys
import tempfile
import time
from datetime import date
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from infra.migrate import upgrade  # noqa: E402
from infra.settings import Settings  # noqa: E402
from reportcycles.bootstrap import build  # noqa: E402
from tests.integration.conftest import berlin, partner_csv  # noqa: E402
from tests.support.servers import CeleryWorker, PostgresServer, RedisServer, smtp_server  # noqa
from workflow.cycles import open_cycle  # noqa: E402
from workflow.models import Notification, NotificationStatus  # noqa: E402
from workflow.partners import ensure_programme, import_partners  # noqa: E402
from workflow.report_templates import load_template_file  # noqa: E402
from workflow.sweep import sweep  # noqa: E402

SHIPPED_TEMPLATE = (Path(__file__).resolve().parents[1] / "reportcycles" / "data"
                    / "report_templates" / "nrw-vielfalt-2027.json")
N = int(os.environ.get("BENCH_PARTNERS", "20000"))
OPENS, DUE = date(2027, 2, 1), date(2027, 4, 30)


def raw_smtp(port: int, count: int) -> float:
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as client:
        for n in range(count):
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = "a@example.org", f"p{n}@example.org", "x"
            msg.set_content("Guten Tag,\n" * 40)
            client.send_message(msg)
    return time.perf_counter() - start


def seeded(pg: PostgresServer, name: str, partners: int, env: dict):
    admin = pg.url().replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = pg.url(name)
    upgrade(url)
    os.environ.update({**env, "DATABASE_URL": url})
    services = build(Settings.from_env(), "celery")
    with services.database.unit_of_work() as uow:
        programme = ensure_programme(uow, coordinator_emails=("koordination@example.org",))
        import_partners(uow, programme, partner_csv(partners))
        load_template_file(uow, programme, SHIPPED_TEMPLATE)
        uow.commit()
    with services.database.unit_of_work() as uow:
        t = time.perf_counter()
        open_cycle(uow, programme, 2027, now=berlin(OPENS, 7), opens_on=OPENS, due_on=DUE)
        uow.commit()
        opened = time.perf_counter() - t
    return services, url, opened


def timed_idle_sweeps(services, repeats=20) -> float:
    best = float("inf")
    for _ in range(repeats):
        with services.database.unit_of_work() as uow:
            t = time.perf_counter()
            sweep(uow, berlin(date(2027, 1, 20), 9, 0), dry_run=True)  # nothing due yet
            best = min(best, time.perf_counter() - t)
    return best


def main():
    pg, redis = PostgresServer().start(), RedisServer().start()
    tmp = Path(tempfile.mkdtemp(prefix="rc-bench-"))
    try:
        with smtp_server() as (controller, handler):
            env = {"CELERY_BROKER_URL": redis.url, "SMTP_URL": f"smtp://127.0.0.1:{controller.port}",
                   "INSTANCE_PATH": str(tmp), "SECRET_KEY": "bench",
                   "SEND_BATCH_SIZE": "100"}
            baseline = raw_smtp(controller.port, N)
            handler.clear()
            small, _, _ = seeded(pg, "bench_small", 30, env)
            big, url, open_seconds = seeded(pg, "bench_big", N, env)
            idle_small, idle_big = timed_idle_sweeps(small), timed_idle_sweeps(big)

            worker = CeleryWorker({**env, "DATABASE_URL": url}, concurrency=2,
                                  logfile=tmp / "worker.log").start()
            start = time.perf_counter()
            with big.database.unit_of_work() as uow:
                result = sweep(uow, berlin(OPENS))
                uow.commit()
            sweep_seconds = time.perf_counter() - start
            while True:
                with big.database.unit_of_work() as uow:
                    sent = uow.session.scalar(select(func.count()).select_from(Notification)
                                              .where(Notification.status == NotificationStatus.SENT))
                if sent >= N or time.perf_counter() - start > 1800:
                    break
                time.sleep(1)
            fanout = time.perf_counter() - start
            worker.stop()
            distinct = len({m["message"]["Message-ID"] for m in handler.messages})
        print(f"partners                     {N}")
        print(f"raw SMTP baseline            {baseline:8.2f} s  ({N / baseline:7.0f} mails/s)")
        print(f"open cycle (plan ladder)     {open_seconds:8.2f} s  ({9 * N + 1} ledger rows)")
        print(f"sweep queuing {result.count('send'):>6} mails    {sweep_seconds:8.2f} s")
        print(f"fan-out through worker       {fanout:8.2f} s  ({sent / fanout:7.0f} mails/s)")
        print(f"  ratio to raw SMTP          {fanout / baseline:8.2f} x  (sent {sent}, "
              f"distinct Message-IDs at the server {distinct}, received {len(handler.messages)})")
        print(f"idle sweep, 30 partners      {idle_small * 1000:8.2f} ms")
        print(f"idle sweep, {N} partners   {idle_big * 1000:8.2f} ms")
        print(f"  ratio big/small            {idle_big / idle_small:8.2f} x")
    finally:
        redis.stop()
        pg.stop()


if __name__ == "__main__":
    main()
