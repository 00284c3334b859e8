"""P4: a configured sending rate R against a mail server that answers 452 above R.

The product: ledger rows of a real cycle on PostgreSQL, delivered by BENCH_WORKERS worker
processes (default: one per core) calling `deliver` on batches of SEND_BATCH_SIZE, as Celery
tasks would, each with its own throttle sharing one pace through Redis (SEND_RATE_PER_SECOND=R).
The receiver: an aiosmtpd server in its own process that accepts at most R mails in any second
(a sliding window of BENCH_SINK_WINDOW seconds holding R × window mails) and answers
`452 4.3.1 too many messages` to any mail above that (it runs at nice -10 when allowed: a
provider's server does not share this machine's cores with our workers and PostgreSQL).

Printed, as medians of BENCH_RUNS (≥ 3) runs on fresh copies of the same database: the rate the
server accepted (first to last accepted mail) against R, mails failed in the ledger, 452 replies.
For contrast, one run each: no throttle into the same server, and R into a server that only takes
0.8 R (the slow-down must find its limit).

Environment: BENCH_RATE (50), BENCH_MAILS (1000), BENCH_RUNS (3), BENCH_WORKERS (cores),
BENCH_SINK_WINDOW (1.0).
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as clock
from email.parser import BytesHeaderParser
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.servers import Postgres, Redis, free_port, wait_for_port  # noqa: E402
from infra.throttle import MARGIN  # noqa: E402

RATE = float(os.environ.get("BENCH_RATE", "50"))
MAILS = int(os.environ.get("BENCH_MAILS", "1000"))
RUNS = max(3, int(os.environ.get("BENCH_RUNS", "3")))
WORKERS = int(os.environ.get("BENCH_WORKERS", str(len(os.sched_getaffinity(0)))))
WINDOW = float(os.environ.get("BENCH_SINK_WINDOW", "1.0"))
BATCH = 50
TEMPLATE = ROOT / "reportcycles" / "data" / "report_templates" / "nrw-vielfalt-2027.json"
BERLIN = ZoneInfo("Europe/Berlin")
OPENS, DUE = date(2027, 2, 1), date(2027, 4, 30)
TOO_MANY = "452 4.3.1 too many messages"


def log(message: str):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class _RateLimited:
    """aiosmtpd handler: at most ``limit`` mails in any ``window`` seconds, 452 above."""

    def __init__(self, limit: int, window: float):
        self.limit, self.window = limit, window
        self.lock = threading.Lock()
        self.accepted: list[float] = []
        self.refused: list[float] = []
        self.message_ids: set[str] = set()
        self.recent: deque[float] = deque()

    async def handle_DATA(self, server, session, envelope):
        now = time.monotonic()
        with self.lock:
            while self.recent and self.recent[0] <= now - self.window:
                self.recent.popleft()
            if len(self.recent) >= self.limit:
                self.refused.append(now)
                return TOO_MANY
            self.recent.append(now)
            self.accepted.append(now)
            self.message_ids.add(str(BytesHeaderParser().parsebytes(envelope.content)
                                     ["Message-ID"]))
        return "250 Message accepted for delivery"


def _sink_main(conn, port: int):
    """The server process: answers ("limit", n, window), ("stats",) and ("stop",) on ``conn``."""
    from aiosmtpd.controller import Controller

    try:  # a provider's server does not share our two cores: let it answer when it is asked
        os.setpriority(os.PRIO_PROCESS, 0, -10)
    except PermissionError:
        pass
    handler = _RateLimited(1, WINDOW)
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    conn.send("ready")
    while True:
        command = conn.recv()
        if command[0] == "limit":
            with handler.lock:
                handler.limit, handler.window = command[1], command[2]
                handler.accepted, handler.refused = [], []
                handler.message_ids, handler.recent = set(), deque()
            conn.send("ok")
        elif command[0] == "stats":
            with handler.lock:
                conn.send((list(handler.accepted), list(handler.refused),
                           len(handler.message_ids)))
        else:
            controller.stop()
            conn.send("stopped")
            return


class Sink:
    """The rate-limited server in its own process."""

    def __init__(self, context):
        self.port = free_port()
        self.conn, child = context.Pipe()
        self.proc = context.Process(target=_sink_main, args=(child, self.port), daemon=True)

    def start(self) -> "Sink":
        self.proc.start()
        if not self.conn.poll(30) or self.conn.recv() != "ready":
            raise RuntimeError("the rate-limited SMTP server did not start")
        wait_for_port(self.port)
        return self

    def limit(self, rate: float, window: float):
        self.conn.send(("limit", max(1, round(rate * window)), window))
        self.conn.recv()

    def stats(self):
        self.conn.send(("stats",))
        return self.conn.recv()

    def stop(self):
        if self.proc.is_alive():
            self.conn.send(("stop",))
            self.conn.poll(10)
            self.proc.join(10)


# The product ----------------------------------------------------------------------------------

def _env(database_url: str, redis_url: str, smtp_port: int, rate: float) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "CELERY_BROKER_URL": redis_url,
            "SMTP_URL": f"smtp://127.0.0.1:{smtp_port}", "BASE_URL": "https://berichte.example.org",
            "SECRET_KEY": "bench", "COORDINATOR_EMAILS": "koordination@example.org",
            "INSTANCE_PATH": tempfile.gettempdir() + "/rc-bench-throttle-instance",
            "SEND_RATE_PER_SECOND": repr(rate), "SEND_BATCH_SIZE": str(BATCH)}


def seed(env: dict[str, str], mails: int) -> list[int]:
    """A programme of ``mails`` partners, its 2027 cycle opened and the invitations handed over."""
    from infra.migrate import upgrade
    from infra.settings import Settings
    from reportcycles.bootstrap import build
    from workflow.cycles import get_programme, open_cycle
    from workflow.partners import ensure_programme, import_partners
    from workflow.policy import ReportingPolicy
    from workflow.report_templates import load_template_file
    from workflow.sweep import sweep

    os.environ.update(env)
    upgrade(env["DATABASE_URL"])
    services = build(Settings.from_env(), "none")
    any_time = ReportingPolicy(window_start=clock(0, 0), window_end=clock(23, 59),
                               window_working_days_only=False)
    lines = ["name,kind,contact_name,contact_email,deputy_email,head_name,head_email,language,"
             "joined_on"]
    lines += [f"Partner {n:05d},Kommune,Kontakt {n},p{n}@example.org,d{n}@example.org,"
              f"Leitung {n},h{n}@example.org,de,2019-01-01" for n in range(mails)]
    with services.database.unit_of_work() as uow:
        programme = ensure_programme(uow, policy=any_time,
                                     coordinator_emails=("koordination@example.org",))
        import_partners(uow, programme, "\n".join(lines) + "\n")
        load_template_file(uow, programme, TEMPLATE)
        uow.commit()
    opening = datetime.combine(OPENS, clock(8, 30), tzinfo=BERLIN)
    with services.database.unit_of_work() as uow:
        open_cycle(uow, get_programme(uow), 2027, now=opening, opens_on=OPENS, due_on=DUE)
        uow.commit()
    with services.database.unit_of_work() as uow:
        handed_over = sweep(uow, opening)
        uow.commit()
    services.database.dispose()
    return sorted(m.notification_id for m in handed_over.mails if m.action == "send")


def _worker_main(env: dict[str, str], batches: list[list[int]], barrier, results):
    """One worker process: its own services and throttle; delivers its batches in turn."""
    logging.basicConfig(level=logging.ERROR)
    os.environ.update(env)
    from infra.settings import Settings
    from reportcycles.bootstrap import build
    from workflow.delivery import deliver

    services = build(Settings.from_env(), "none")
    barrier.wait()
    counts = {"sent": 0, "retrying": 0, "failed": 0, "other": 0}
    for batch in batches:
        report = deliver(services.mail, batch)
        counts["sent"] += len(report.sent)
        counts["retrying"] += len(report.retrying)
        counts["failed"] += len(report.failed)
        counts["other"] += len(report.deferred) + len(report.passed) + len(report.lost)
    services.database.dispose()
    results.put(counts)


@dataclass
class Run:
    accepted: int
    refused: int
    distinct: int
    rate: float  # mails per second the server accepted, first to last
    busiest: int  # most mails accepted in any window
    sent: int
    retrying: int
    failed: int
    seconds: float


def busiest(times: list[float], window: float) -> int:
    most, start = 0, 0
    for end, at in enumerate(times):
        while times[start] <= at - window:
            start += 1
        most = max(most, end - start + 1)
    return most


def run_once(context, postgres: Postgres, redis_server: Redis, sink: Sink, ids: list[int],
             number: int, rate: float, server_rate: float) -> Run:
    from sqlalchemy import create_engine, text

    database = f"throttle_run_{number}"
    postgres.sql(f"CREATE DATABASE {database} TEMPLATE throttle_seeded")
    redis_server.flush()  # a fresh pace for every run
    sink.limit(server_rate, WINDOW)
    env = _env(postgres.url(database), redis_server.url, sink.port, rate)
    batches = [ids[i:i + BATCH] for i in range(0, len(ids), BATCH)]
    barrier = context.Barrier(WORKERS + 1)
    results = context.Queue()
    workers = [context.Process(target=_worker_main,
                               args=(env, batches[w::WORKERS], barrier, results))
               for w in range(WORKERS)]
    for worker in workers:
        worker.start()
    barrier.wait(120)
    started = time.monotonic()
    counts = [results.get(timeout=600) for _ in workers]
    seconds = time.monotonic() - started
    for worker in workers:
        worker.join(30)
    accepted, refused, distinct = sink.stats()
    engine = create_engine(postgres.url(database))
    with engine.connect() as conn:
        failed = conn.execute(text("SELECT count(*) FROM notification "
                                   "WHERE status = 'failed'")).scalar_one()
    engine.dispose()
    postgres.sql(f"DROP DATABASE {database} WITH (FORCE)")
    span = accepted[-1] - accepted[0] if len(accepted) > 1 else 0.0
    return Run(accepted=len(accepted), refused=len(refused), distinct=distinct,
               rate=(len(accepted) - 1) / span if span else 0.0,
               busiest=busiest(accepted, WINDOW), sent=sum(c["sent"] for c in counts),
               retrying=sum(c["retrying"] for c in counts), failed=failed, seconds=seconds)


def describe(run: Run, server_rate: float) -> str:
    return (f"{run.rate:.2f} mails/s accepted ({run.accepted} mails, {run.distinct} distinct "
            f"Message-IDs, busiest {WINDOW:g} s: {run.busiest} of {round(server_rate * WINDOW)} "
            f"allowed), 452 replies {run.refused}, sent {run.sent}, retrying {run.retrying}, "
            f"failed {run.failed}, {run.seconds:.1f} s")


def main():
    context = multiprocessing.get_context("spawn")
    log(f"P4: rate {RATE:g}/s, {MAILS} mails, {WORKERS} worker processes, {RUNS} runs; "
        f"the server takes at most {round(RATE * WINDOW)} mails in any {WINDOW:g} s")
    postgres, redis_server, sink = Postgres(), Redis(), Sink(context)
    try:
        postgres.start()
        redis_server.start()
        sink.start()
        postgres.sql("CREATE DATABASE throttle_seeded")
        started = time.monotonic()
        ids = seed(_env(postgres.url("throttle_seeded"), redis_server.url, sink.port, RATE),
                   MAILS)
        log(f"seeded {len(ids)} invitations handed over in {time.monotonic() - started:.1f} s")
        runs = []
        for number in range(RUNS):
            runs.append(run_once(context, postgres, redis_server, sink, ids, number, RATE,
                                 RATE))
            log(f"run {number + 1}: {describe(runs[-1], RATE)}")
        unthrottled = run_once(context, postgres, redis_server, sink, ids, RUNS, 0, RATE)
        log(f"no throttle, same server: {describe(unthrottled, RATE)}")
        stricter = run_once(context, postgres, redis_server, sink, ids, RUNS + 1, RATE,
                            0.8 * RATE)
        log(f"rate {RATE:g}/s into a server taking {0.8 * RATE:g}/s: "
            f"{describe(stricter, 0.8 * RATE)}")
    finally:
        sink.stop()
        redis_server.stop()
        postgres.stop()
    achieved = statistics.median(r.rate for r in runs)
    failed = max(r.failed for r in runs)
    met = achieved >= 0.95 * RATE and failed == 0
    print()
    print(f"P4  rate R = {RATE:g}/s into a server answering 452 above R ({WORKERS} workers, "
          f"{MAILS} mails, median of {RUNS} runs): {achieved:.2f} mails/s = "
          f"{achieved / RATE:.3f} R; failed {failed}; target ≥ 0.95 R, 0 failed: "
          f"{'met' if met else 'NOT MET'}")
    print(f"    per run: {', '.join(f'{r.rate:.2f}' for r in runs)} mails/s; 452 replies "
          f"{', '.join(str(r.refused) for r in runs)} (each such mail waits for its retry); "
          f"the throttle keeps {MARGIN:g} R until a server says it is too fast")
    print(f"    contrast, no throttle: {unthrottled.refused} replies 452 for {MAILS} mails, "
          f"{unthrottled.retrying} mails waiting for a retry, {unthrottled.failed} failed")
    print(f"    contrast, server at 0.8 R: {stricter.rate:.2f} mails/s = "
          f"{stricter.rate / (0.8 * RATE):.3f} × its limit, {stricter.refused} replies 452, "
          f"{stricter.failed} failed")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
