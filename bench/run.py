"""`make bench`: reportcycles against baselines measured in the same run, on real servers.

Every figure is the median of alternating pairs (baseline, product, baseline, product …), printed
with its ratio and target, and written to bench/RESULTS.md with the machine and the command.

P1  invitation fan-out to N partners through the real pipeline on PostgreSQL (open a cycle,
    sweep, Celery over Redis, a real `celery worker` with one pool process per core) into
    Postfix's smtp-sink in its own process; baseline: as many plain smtplib processes as cores on
    persistent connections, sending a real invitation (same size, parts and recipients) as a plain
    smtplib script does: built once as an EmailMessage and handed to send_message for each
    recipient. For scale also the invitation's bytes written once, and a mail merge.
P2  the ledger rows of one rung for 20,000 submissions (the set-based INSERT … SELECT of opening
    a cycle) against a bare bulk INSERT of as many rows into a table of the same shape.
P3  a sweep over 100,000 submissions with 1 % due against `SELECT count(*)` over them.
P7  the worker's memory (RSS of all its processes) during the P1 fan-out against idle.

Environment: BENCH_PARTNERS (default 20000; 2000 for a quick run), BENCH_PAIRS (3),
BENCH_LEDGER_ROWS (20000), BENCH_SWEEP_SUBMISSIONS (100000).
"""
from __future__ import annotations

import email
import email.policy
import email.utils
import multiprocessing
import os
import platform
import re
import smtplib
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from datetime import UTC, date, datetime
from datetime import time as clock
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from bench.servers import (CeleryWorker, Postgres, Redis, SmtpSink, bench_command,  # noqa: E402
                           machine_busy, message_ids)
from infra.migrate import upgrade  # noqa: E402
from infra.settings import Settings  # noqa: E402
from reportcycles.bootstrap import build  # noqa: E402
from workflow.cycles import open_cycle, policy_of  # noqa: E402
from workflow.partners import ensure_programme, import_partners  # noqa: E402
from workflow.policy import plan_submission_rungs  # noqa: E402
from workflow.report_templates import load_template_file  # noqa: E402
from workflow.sweep import sweep  # noqa: E402

TEMPLATE = ROOT / "reportcycles" / "data" / "report_templates" / "nrw-vielfalt-2027.json"
RESULTS = ROOT / "bench" / "RESULTS.md"
BERLIN = ZoneInfo("Europe/Berlin")
YEAR, OPENS, DUE = 2027, date(2027, 2, 1), date(2027, 4, 30)
NOW = datetime.combine(OPENS, clock(8, 30), tzinfo=BERLIN)  # a Monday, inside the send window

PARTNERS = int(os.environ.get("BENCH_PARTNERS", "20000"))
PAIRS = max(3, int(os.environ.get("BENCH_PAIRS", "3")))
LEDGER_ROWS = int(os.environ.get("BENCH_LEDGER_ROWS", "20000"))
SWEEP_SUBMISSIONS = int(os.environ.get("BENCH_SWEEP_SUBMISSIONS", "100000"))
QUICK_PAIRS = max(PAIRS, 7)  # P2 and P3 take milliseconds: more pairs, steadier medians
CORES = len(os.sched_getaffinity(0))
MB = 1024 * 1024

# One real partner, imported through the use case; the others are copies made in SQL.
PARTNER_CSV = ("name,kind,contact_name,contact_email,deputy_email,head_name,head_email,language,"
               "joined_on\nPartner 000000,Kommune,Kira Kontakt,kontakt@example.org,"
               "vertretung@example.org,Hanna Leitung,leitung@example.org,de,2019-01-01\n")


def log(message: str):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# Set-up --------------------------------------------------------------------------------------

class Stack:
    """The servers every benchmark shares, and the environment the product runs with."""

    def __init__(self, exits: ExitStack):
        self.tmp = Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="rc-bench-")))
        log("starting PostgreSQL and Redis")
        self.pg = Postgres().start()
        exits.callback(self.pg.stop)
        self.redis = Redis().start()
        exits.callback(self.redis.stop)

    def env(self, database: str, smtp_url: str = "smtp://127.0.0.1:25") -> dict:
        return {"DATABASE_URL": self.pg.url(database), "CELERY_BROKER_URL": self.redis.url,
                "SMTP_URL": smtp_url, "INSTANCE_PATH": str(self.tmp / "instance"),
                "SECRET_KEY": "bench", "BASE_URL": "https://berichte.example.org"}

    def services(self, database: str, smtp_url: str = "smtp://127.0.0.1:25"):
        os.environ.update(self.env(database, smtp_url))
        return build(Settings.from_env(), "celery")


def columns(session, table: str) -> list[str]:
    return list(session.scalars(text(
        "SELECT column_name FROM information_schema.columns WHERE table_name = :t "
        "ORDER BY ordinal_position"), {"t": table}))


def seed(stack: Stack, database: str, partners: int, *, open_the_cycle: bool) -> float | None:
    """A database with the shipped report template and ``partners`` partners with three contacts
    each; the cycle opened when asked (returns how long open_cycle took)."""
    stack.pg.create_database(database)
    upgrade(stack.pg.url(database))
    services = stack.services(database)
    try:
        with services.database.unit_of_work() as uow:
            programme = ensure_programme(uow, coordinator_emails=("koordination@example.org",))
            import_partners(uow, programme, PARTNER_CSV)
            load_template_file(uow, programme, TEMPLATE)
            uow.commit()
        with services.database.unit_of_work() as uow:
            _copy_partner(uow.session, partners - 1)
            uow.commit()
        stack.pg.sql("VACUUM ANALYZE", database)
        return open_year(services) if open_the_cycle else None
    finally:
        services.database.dispose()


def _copy_partner(session, copies: int):
    """Copies of the first partner and its contacts, set-based: names and addresses numbered."""
    source = session.scalar(text("SELECT min(id) FROM partner"))
    names = [c for c in columns(session, "partner") if c != "id"]
    values = ["'Partner ' || lpad(g::text, 6, '0')" if c == "name" else f'src."{c}"'
              for c in names]
    session.execute(text(
        f"INSERT INTO partner ({', '.join(map(quote, names))}) SELECT {', '.join(values)} "
        "FROM partner src, generate_series(1, :n) g WHERE src.id = :src"),
        {"n": copies, "src": source})
    names = [c for c in columns(session, "contact") if c != "id"]
    values = ["p.id" if c == "partner_id" else "'p' || p.id || '.' || c.email" if c == "email"
              else f'c."{c}"' for c in names]
    session.execute(text(
        f"INSERT INTO contact ({', '.join(map(quote, names))}) SELECT {', '.join(values)} "
        "FROM partner p JOIN contact c ON c.partner_id = :src WHERE p.id <> :src"),
        {"src": source})


def quote(name: str) -> str:
    return f'"{name}"'


def open_year(services) -> float:
    with services.database.unit_of_work() as uow:
        from workflow.cycles import get_programme
        programme = get_programme(uow)
        start = time.perf_counter()
        open_cycle(uow, programme, YEAR, now=NOW, opens_on=OPENS, due_on=DUE)
        uow.commit()
        return time.perf_counter() - start


def in_flight(services) -> int:
    """Ledger rows due and not yet claimed (the sweep handed them over), queued or being sent,
    counted through the partial indexes of planned and outbox rows: polling must not load the
    database it measures (counting every status scanned the whole ledger, 180,000 rows at
    20,000 partners, five times a second)."""
    with services.database.unit_of_work() as uow:
        return uow.session.scalar(text(
            "SELECT (SELECT count(*) FROM notification WHERE status IN ('queued', 'sending')) "
            "+ (SELECT count(*) FROM notification WHERE status = 'planned' AND due_at <= :now)"),
            {"now": NOW})


def status_counts(services) -> dict[str, int]:
    with services.database.unit_of_work() as uow:
        return dict(uow.session.execute(text(
            "SELECT status::text, count(*) FROM notification GROUP BY status")).all())


# P1 and P7: the fan-out ------------------------------------------------------------------------

@dataclass
class FanOut:
    mails: int
    seconds: float
    received: int
    distinct_ids: int
    counters: str
    open_seconds: float | None = None
    ledger_rows: int | None = None
    idle_rss: int | None = None
    peak_rss: int | None = None
    problems: list[str] = field(default_factory=list)
    sample: tuple[list[str], bytes] | None = None  # one received mail: recipients, bytes
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds by process kind
    others: float = 0.0  # CPU seconds other processes on the machine used meanwhile

    @property
    def rate(self) -> float:
        return self.mails / self.seconds


def capture_invitation(stack: Stack) -> tuple[list[str], bytes]:
    """One invitation exactly as the pipeline sends it, taken from the sink (also proves the
    pipeline works before anything is timed)."""
    database = "p1_probe"
    seed(stack, database, 3, open_the_cycle=True)
    run = product_fanout(stack, database, expected=3, concurrency=1)
    if run.problems:
        raise RuntimeError("the pipeline does not deliver: " + "; ".join(run.problems))
    stack.pg.drop_database(database)
    return run.sample


def product_fanout(stack: Stack, database: str, expected: int,
                   concurrency: int = CORES) -> FanOut:
    """Sweep the opened cycle and wait until the worker has recorded every invitation sent."""
    sink = SmtpSink().start()
    services = stack.services(database, sink.url)
    worker = CeleryWorker(stack.env(database, sink.url), concurrency,
                          stack.tmp / f"worker-{database}.log")
    try:
        worker.start()
        time.sleep(1.0)
        idle = worker.rss()
        peak, sampling = [idle], threading.Event()

        def sample():
            while not sampling.wait(0.1):
                peak[0] = max(peak[0], worker.rss())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        cpu_before = {"worker": worker.cpu(), "PostgreSQL": stack.pg.cpu(),
                      "smtp-sink": sink.cpu(), "sweep and polling": time.process_time()}
        machine_before = machine_busy()
        start = time.time()
        with services.database.unit_of_work() as uow:
            handed_over = sweep(uow, NOW).count("send")
            uow.commit()
        problems = ([] if handed_over == expected
                    else [f"the sweep handed over {handed_over}, not {expected}"])
        deadline = time.monotonic() + max(120, expected / 20)
        while in_flight(services):  # done when nothing is waiting or being sent any more
            if time.monotonic() > deadline or not sink.alive():
                problems.append(f"not finished in time: {status_counts(services)}"
                                if sink.alive() else f"smtp-sink stopped: {sink.counters()}")
                break
            time.sleep(0.2)
        counts = status_counts(services)
        cpu = {"worker": worker.cpu(), "PostgreSQL": stack.pg.cpu(), "smtp-sink": sink.cpu(),
               "sweep and polling": time.process_time()}
        cpu = {kind: used - cpu_before[kind] for kind, used in cpu.items()}
        others = machine_busy() - machine_before - sum(cpu.values())
        sampling.set()
        sampler.join()
        with services.database.unit_of_work() as uow:
            last = uow.session.scalar(text(
                "SELECT extract(epoch FROM max(sent_at)) FROM notification WHERE status = 'sent'"))
        sent = counts.get("sent", 0)
        if sent != handed_over:
            problems.append(f"sent {sent} of {handed_over}: {counts}; worker log: "
                            f"{worker.log_tail()}")
        seconds = (float(last) if last else time.time()) - start
        worker.stop()
        time.sleep(0.3)  # smtp-sink has finished writing its last files
        received = sink.received()
        ids = message_ids([message for _, message in received])
        if len(received) != sent:
            problems.append(f"the sink received {len(received)} mails, the ledger says {sent}")
        if len(set(ids)) != len(ids):
            problems.append(f"{len(ids) - len(set(ids))} Message-IDs received twice")
        if sink.counted() != len(received):
            problems.append(f"smtp-sink counted {sink.counters()}, dumped {len(received)}")
        return FanOut(sent, seconds, len(received), len(set(ids)), sink.counters(),
                      idle_rss=idle, peak_rss=peak[0], problems=problems,
                      sample=received[0] if received else None, cpu=cpu, others=others)
    finally:
        worker.stop()
        services.database.dispose()
        sink.stop()


# How a baseline sender gets each mail: the invitation's bytes; one EmailMessage built once and
# sent with send_message (re-flattened for every recipient, as a plain smtplib script does); or
# a mail merge building every mail with the standard library.
BYTES, FLATTEN, MERGE = "bytes", "flatten", "merge"


def _blast(port: int, recipients: int, message: bytes, old_id: bytes, count: int, worker: int,
           ready, go, done, kind: str = FLATTEN):
    try:
        client = smtplib.SMTP("127.0.0.1", port)
        client.ehlo()
        parsed = email.message_from_bytes(message, policy=email.policy.SMTP)
        subject, sender = str(parsed["Subject"]), str(parsed["From"])
        text = parsed.get_body(("plain",)).get_content()
        html = parsed.get_body(("html",)).get_content()

        def built(to: list[str], message_id: str) -> EmailMessage:
            mail = EmailMessage(policy=email.policy.SMTP)
            mail["Subject"], mail["From"], mail["To"] = subject, sender, ", ".join(to)
            mail["Date"], mail["Message-ID"] = email.utils.formatdate(), message_id
            mail.set_content(text)
            mail.add_alternative(html, subtype="html")
            return mail

        once = built(["x@example.org"], "<x@berichte.example.org>")
        ready.put(worker)
        go.wait()
        for n in range(count):
            new_id = f"<bench.{worker}.{n}.{'x' * 20}@berichte.example.org>"
            to = [f"p{worker}.{n}.{r}@example.org" for r in range(recipients)]
            if kind == BYTES:
                client.sendmail("berichte@example.org", to,
                                message.replace(old_id, new_id.encode(), 1))
            elif kind == FLATTEN:
                once.replace_header("To", ", ".join(to))
                once.replace_header("Message-ID", new_id)
                client.send_message(once, "berichte@example.org", to)
            else:
                client.send_message(built(to, new_id), "berichte@example.org", to)
        client.quit()
        done.put((worker, time.time(), None))
    except Exception as exc:  # reported to the parent, which fails the run
        done.put((worker, time.time(), repr(exc)))


def baseline_fanout(recipients: int, message: bytes, count: int, *, kind: str = FLATTEN
                    ) -> FanOut:
    """As many plain smtplib processes as cores, each on one persistent connection, sending the
    invitation (``kind``: its bytes with a fresh Message-ID, or an EmailMessage of its subject,
    text and HTML built once or for every mail)."""
    [old_id] = message_ids([message])
    sink = SmtpSink().start()
    context = multiprocessing.get_context("fork")
    ready, done, go = context.Queue(), context.Queue(), context.Event()
    shares = [count // CORES + (1 if n < count % CORES else 0) for n in range(CORES)]
    processes = [context.Process(target=_blast, args=(
        sink.port, recipients, message, old_id.encode(), share, n, ready, go, done, kind))
        for n, share in enumerate(shares)]
    try:
        for process in processes:
            process.start()
        for _ in processes:
            ready.get(timeout=30)
        before = os.times()
        sink_before = sink.cpu()
        machine_before = machine_busy()
        start = time.time()
        go.set()
        finished = [done.get(timeout=max(120, count / 20)) for _ in processes]
        sink_cpu = sink.cpu() - sink_before
        machine = machine_busy() - machine_before
        for process in processes:
            process.join(10)
        after = os.times()
        senders = (after.children_user + after.children_system
                   - before.children_user - before.children_system)
        others = machine - senders - sink_cpu
        errors = [error for _, _, error in finished if error]
        seconds = max(end for _, end, _ in finished) - start
        time.sleep(0.3)
        received = sink.message_count()
        problems = errors + ([f"the sink received {received} of {count}"]
                             if received != count else [])
        if sink.counted() != received:
            problems.append(f"smtp-sink counted {sink.counters()}, dumped {received}")
        return FanOut(count, seconds, received, received, sink.counters(), problems=problems,
                      cpu={"smtplib senders": senders, "smtp-sink": sink_cpu}, others=others)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
        sink.stop()


def bench_fanout(stack: Stack) -> tuple[list[FanOut], list[FanOut], dict]:
    log("P1: capturing one invitation as the pipeline sends it (3-partner probe)")
    recipients, message = capture_invitation(stack)
    sample = {"bytes": len(message), "recipients": len(recipients),
              "parts": message.count(b"Content-Type:") - 1}
    log(f"P1: the invitation is {sample['bytes']:,} bytes, {sample['parts']} MIME parts, "
        f"{sample['recipients']} recipient(s)")
    log(f"P1: seeding {PARTNERS:,} partners")
    seed(stack, "p1_seed", PARTNERS, open_the_cycle=False)
    baselines, products, raw, merges = [], [], [], []
    for pair in range(1, PAIRS + 1):
        for kind, runs in ((FLATTEN, baselines), (BYTES, raw), (MERGE, merges)):
            run = baseline_fanout(len(recipients), message, PARTNERS, kind=kind)
            runs.append(run)
            log(f"P1 pair {pair}: {kind:8s} {run.rate:7.0f} mails/s ({run.seconds:.2f} s, "
                f"sink took {run.received:,}; CPU ms/mail " + ", ".join(
                    f"{part} {used / run.mails * 1000:.2f}" for part, used in run.cpu.items())
                + f"; other processes {others_share(run):.0%} of the cores)" + _problems(run))
        database = f"p1_run{pair}"
        stack.pg.create_database(database, template="p1_seed")
        services = stack.services(database)
        opened = open_year(services)
        rows = sum(status_counts(services).values())
        services.database.dispose()
        run = product_fanout(stack, database, expected=PARTNERS)
        run.open_seconds, run.ledger_rows = opened, rows
        products.append(run)
        stack.pg.drop_database(database)
        log(f"P1 pair {pair}: product  {run.rate:7.0f} mails/s ({run.seconds:.2f} s, "
            f"sink took {run.received:,}, {run.distinct_ids:,} distinct Message-IDs); "
            f"worker RSS idle {run.idle_rss / MB:.0f} MB, peak {run.peak_rss / MB:.0f} MB; "
            f"open_cycle {opened:.2f} s; CPU ms/mail " + ", ".join(
                f"{kind} {used / run.mails * 1000:.2f}" for kind, used in run.cpu.items())
            + f"; other processes {others_share(run):.0%} of the cores" + _problems(run))
    stack.pg.drop_database("p1_seed")
    sample["raw"], sample["merges"] = raw, merges
    return baselines, products, sample


def _against(baselines: list[FanOut], products: list[FanOut]) -> str:
    ratios = [p.rate / b.rate for b, p in zip(baselines, products)]
    problems = [problem for b in baselines for problem in b.problems]
    return (", ".join(f"{b.rate:,.0f}" for b in baselines) + " mails/s; the pipeline reaches "
            + ", ".join(f"{r:.2f}" for r in ratios) + f"× of it (median {median(ratios):.2f}×)"
            + (" – problems: " + "; ".join(problems) if problems else ""))


def others_share(run: FanOut) -> float:
    """How much of the machine other processes (not this benchmark's) took during a run."""
    return max(0.0, run.others) / (run.seconds * CORES)


def _problems(run) -> str:
    return "" if not run.problems else "  PROBLEMS: " + "; ".join(run.problems)


# P2: one rung of ledger rows -------------------------------------------------------------------

def plan_one_rung(uow, cycle, rung):
    """The set-based INSERT … SELECT that opening a cycle runs for each rung."""
    import workflow.cycles
    if hasattr(workflow.cycles, "_plan_for_cycle_submissions"):  # before workflow/ledger.py
        return workflow.cycles._plan_for_cycle_submissions(uow, cycle, [rung], NOW)
    from workflow.ledger import plan_rung_for_cycle
    return plan_rung_for_cycle(uow, cycle.id, cycle.due_on, rung, NOW)


def bench_rung(cycle):
    """A rung like the first reminder, under a name of its own: planned beside the real ones."""
    return replace(plan_submission_rungs(policy_of(cycle.programme), OPENS, DUE)[1],
                   rung="bench_rung")


def bench_ledger(stack: Stack) -> tuple[list[float], list[float], float, tuple[float, float]]:
    database = "p2"
    log(f"P2: seeding {LEDGER_ROWS:,} partners and opening their cycle")
    opened = seed(stack, database, LEDGER_ROWS, open_the_cycle=True)
    services = stack.services(database)
    with services.database.unit_of_work() as uow:
        session = uow.session
        names = [c for c in columns(session, "notification") if c != "id"]
        session.execute(text("CREATE TABLE notification_bare (LIKE notification INCLUDING ALL)"))
        session.execute(text("INSERT INTO notification_bare SELECT * FROM notification"))
        # The rows the bare INSERT writes: one rung's worth, the same width as the ledger's.
        session.execute(text(
            "CREATE TABLE bare_source AS SELECT * FROM notification WHERE rung = 'invitation' "
            "AND submission_id IS NOT NULL"))
        uow.commit()
    stack.pg.sql("VACUUM ANALYZE", database)
    values = ["dedupe_key || '.bare'" if c == "dedupe_key" else quote(c) for c in names]
    bare_insert = text(f"INSERT INTO notification_bare ({', '.join(map(quote, names))}) "
                       f"SELECT {', '.join(values)} FROM bare_source")

    from workflow.models import Cycle
    baselines, products = [], []
    for pair in range(QUICK_PAIRS + 2):
        with services.database.unit_of_work() as uow:
            start = time.perf_counter()
            written = uow.session.execute(bare_insert).rowcount
            bare = time.perf_counter() - start
        with services.database.unit_of_work() as uow:
            cycle = uow.session.query(Cycle).one()
            rung = bench_rung(cycle)
            start = time.perf_counter()
            plan_one_rung(uow, cycle, rung)
            ledger = time.perf_counter() - start
            planned = uow.session.scalar(text(
                "SELECT count(*) FROM notification WHERE rung = 'bench_rung'"))
        if written != LEDGER_ROWS or planned != LEDGER_ROWS:
            raise RuntimeError(f"P2 wrote {written} bare rows and {planned} ledger rows, "
                               f"not {LEDGER_ROWS}")
        stack.pg.sql("VACUUM notification, notification_bare", database)
        if pair < 2:
            continue  # warming up: the first runs read the tables into the cache
        baselines.append(bare)
        products.append(ledger)
        log(f"P2 pair {pair - 1}: bare INSERT {bare * 1000:7.1f} ms, ledger rung "
            f"{ledger * 1000:7.1f} ms ({ledger / bare:.2f}×)")
    checks = foreign_key_share(services, plan_one_rung)
    services.database.dispose()
    stack.pg.drop_database(database)
    return baselines, products, opened, checks


def foreign_key_share(services, plan) -> tuple[float, float]:
    """The ledger INSERT once more under EXPLAIN ANALYZE (rolled back): (ms in foreign-key
    checks, ms in all). The bare table has no foreign keys; the ledger keeps them."""
    from sqlalchemy import event

    from workflow.models import Cycle
    captured = {}

    def capture(conn, cursor, statement, parameters, context, many):
        if statement.startswith("INSERT INTO notification"):
            captured["statement"], captured["parameters"] = statement, parameters

    event.listen(services.database.engine, "before_cursor_execute", capture)
    try:
        with services.database.unit_of_work() as uow:
            cycle = uow.session.query(Cycle).one()
            plan(uow, cycle, bench_rung(cycle))
            uow.rollback()
            cursor = uow.session.connection().connection.dbapi_connection.cursor()
            cursor.execute("EXPLAIN (ANALYZE) " + captured["statement"], captured["parameters"])
            plan_lines = [row[0] for row in cursor.fetchall()]
            uow.rollback()  # EXPLAIN ANALYZE wrote the rows, unseen by the unit of work
    finally:
        event.remove(services.database.engine, "before_cursor_execute", capture)
    checks = sum(float(m.group(1)) for line in plan_lines
                 if (m := re.search(r"^Trigger for constraint .*time=([\d.]+)", line)))
    total = next(float(m.group(1)) for line in plan_lines
                 if (m := re.search(r"^Execution Time: ([\d.]+)", line)))
    return checks, total


# P3: the sweep ----------------------------------------------------------------------------------

def bench_sweep(stack: Stack) -> tuple[list[float], list[float], list[float], int, int]:
    database = "p3"
    log(f"P3: seeding {SWEEP_SUBMISSIONS:,} submissions, 1 % of them due")
    seed(stack, database, SWEEP_SUBMISSIONS, open_the_cycle=True)
    services = stack.services(database)
    with services.database.unit_of_work() as uow:
        # The invitations of 99 % went out earlier; 1 % are still due (planned, due_at <= now).
        uow.session.execute(text(
            "UPDATE notification SET status = 'sent', sent_at = due_at "
            "WHERE rung = 'invitation' AND submission_id % 100 <> 0"))
        due = uow.session.scalar(text(
            "SELECT count(*) FROM notification WHERE status = 'planned' AND due_at <= :now"),
            {"now": NOW})
        ledger_rows = uow.session.scalar(text("SELECT count(*) FROM notification"))
        uow.commit()
    stack.pg.sql("VACUUM ANALYZE", database)
    counts, sweeps, dry = [], [], []
    for pair in range(QUICK_PAIRS + 1):
        with services.database.unit_of_work() as uow:
            start = time.perf_counter()
            total = uow.session.scalar(text("SELECT count(*) FROM submission"))
            counted = time.perf_counter() - start
        with services.database.unit_of_work() as uow:  # rolled back: the same work every time
            start = time.perf_counter()
            handed_over = sweep(uow, NOW).count("send")
            swept = time.perf_counter() - start
        with services.database.unit_of_work() as uow:
            start = time.perf_counter()
            sweep(uow, NOW, dry_run=True)
            dry_run = time.perf_counter() - start
        if total != SWEEP_SUBMISSIONS or handed_over != due:
            raise RuntimeError(f"P3: {total} submissions, the sweep handed over {handed_over} of "
                               f"{due} due")
        stack.pg.sql("VACUUM notification, event, submission, handover", database)
        if pair < 1:
            continue  # warming up
        counts.append(counted)
        sweeps.append(swept)
        dry.append(dry_run)
        log(f"P3 pair {pair}: count(*) {counted * 1000:6.1f} ms, sweep {swept * 1000:6.1f} ms "
            f"({swept / counted:.1f}×), dry run {dry_run * 1000:6.1f} ms")
    services.database.dispose()
    stack.pg.drop_database(database)
    return counts, sweeps, dry, due, ledger_rows


# Report -------------------------------------------------------------------------------------

def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                  if line.startswith("model name")), platform.processor() or "unknown")
    ram = next(int(line.split()[1]) for line in open("/proc/meminfo")
               if line.startswith("MemTotal"))
    return (f"{CORES} cores (`nproc`), {model}, {ram / 1024 / 1024:.1f} GiB RAM, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}")


def median(values) -> float:
    return statistics.median(values)


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def report(fan: tuple, ledger: tuple, sweeping: tuple) -> tuple[str, list[str]]:
    baselines, products, sample = fan
    p1_ratios = [p.rate / b.rate for b, p in zip(baselines, products)]
    p7_ratios = [p.peak_rss / p.idle_rss for p in products]
    bare, rung, opened, (checks, explained) = ledger
    p2_ratios = [r / b for b, r in zip(bare, rung)]
    counts, sweeps, dry, due, ledger_rows = sweeping
    p3_ratios = [s / c for c, s in zip(counts, sweeps)]
    p1, p2, p3, p7 = (median(p1_ratios), median(p2_ratios), median(p3_ratios),
                      median(p7_ratios))
    sweep_ms = median(sweeps) * 1000
    received = [p.received for p in products]
    distinct = [p.distinct_ids for p in products]
    rows = [
        ("P1", f"invitation fan-out, {PARTNERS:,} partners: pipeline (sweep → Redis → "
               f"`celery worker` ×{CORES} → smtp-sink)",
         f"{median([p.rate for p in products]):,.0f} mails/s",
         f"{CORES} smtplib processes, persistent connections, the invitation built once and "
         f"sent with `send_message`: {median([b.rate for b in baselines]):,.0f} mails/s",
         f"{p1:.2f}×", "≥ 0.8×", verdict(p1 >= 0.8)),
        ("P2", f"ledger rows of one rung, {LEDGER_ROWS:,} submissions (INSERT … SELECT)",
         f"{median(rung) * 1000:,.0f} ms",
         f"bare bulk INSERT of {LEDGER_ROWS:,} rows, same shape and indexes: "
         f"{median(bare) * 1000:,.0f} ms", f"{p2:.2f}×", "≤ 2×", verdict(p2 <= 2)),
        ("P3", f"sweep over {SWEEP_SUBMISSIONS:,} submissions, {due:,} due (1 %)",
         f"{sweep_ms:,.0f} ms", f"`SELECT count(*)` over them: {median(counts) * 1000:,.1f} ms",
         f"{p3:.1f}×", "≤ 5× and < 1 s", verdict(p3 <= 5 and sweep_ms < 1000)),
        ("P4", "rate R against a sink answering 452 above R", "—", "—", "—",
         "≥ 0.95 R, 0 failed", "measured by bench/throttle.py (make bench runs it next)"),
        ("P7", f"worker RSS (all {CORES + 1} processes) during the {PARTNERS:,} fan-out, peak",
         f"{median([p.peak_rss for p in products]) / MB:,.0f} MB",
         f"idle worker after start: {median([p.idle_rss for p in products]) / MB:,.0f} MB",
         f"{p7:.2f}×", "≤ 1.5×", verdict(p7 <= 1.5)),
    ]
    lines = [
        "| # | measured | product | baseline (same run) | ratio | target | |",
        "|---|---|---|---|---|---|---|",
        *[f"| {' | '.join(row)} |" for row in rows],
    ]
    details = [
        "- P1 pairs (baseline, product mails/s): " + ", ".join(
            f"{b.rate:,.0f} / {p.rate:,.0f}" for b, p in zip(baselines, products))
        + f"; ratios {', '.join(f'{r:.2f}' for r in p1_ratios)}.",
        f"- P1 message: a real invitation taken from the pipeline, {sample['bytes']:,} bytes, "
        f"{sample['parts']} MIME parts (multipart/alternative: text and HTML), "
        f"{sample['recipients']} recipient(s). The baseline builds the same mail from its "
        "subject, text and HTML with the standard library (`email.message.EmailMessage`, "
        "`set_content`, `add_alternative`) once, and sends it with a fresh Message-ID to each "
        "recipient with `send_message`, which writes it out again each time, as a plain smtplib "
        "script does. The issue's own measurement (701 against 1,166 mails/s, 0.60×) is this "
        "baseline's.",
        "- P1 for scale, two more baselines of plain smtplib processes (as many as cores, "
        "persistent connections, same sink):",
        "  - the invitation's bytes, written once, sent with a fresh Message-ID per mail "
        "(no MIME work at all): " + _against(sample["raw"], products) + ";",
        "  - the mail built for every recipient, as a mail merge does: "
        + _against(sample["merges"], products) + ".",
        f"- P1 check: the sink received {', '.join(f'{r:,}' for r in received)} invitations "
        f"(of {PARTNERS:,} per run; its own counters agree: `{products[-1].counters}`) with "
        f"{', '.join(f'{d:,}' for d in distinct)} distinct Message-IDs; the ledger recorded each "
        "as sent. Product time runs from the sweep's "
        "start to the last mail recorded as sent.",
        f"- Opening the cycle for {PARTNERS:,} partners (plans "
        f"{products[0].ledger_rows:,} ledger rows): "
        f"{median([p.open_seconds for p in products]):.2f} s (median of the P1 runs); P2's own "
        f"cycle of {LEDGER_ROWS:,}: {opened:.2f} s.",
        "- P2 pairs (bare, ledger ms): " + ", ".join(
            f"{b * 1000:.0f} / {r * 1000:.0f}" for b, r in zip(bare, rung))
        + ". The ledger side is `plan_rung_for_cycle` (one INSERT … SELECT over the cycle's "
        "submissions); the bare side copies as many rows from a plain table into "
        "`CREATE TABLE … (LIKE notification INCLUDING ALL)` holding the same rows as the ledger "
        "(same columns and indexes, no foreign keys). Both are rolled back. Under EXPLAIN "
        f"ANALYZE the ledger INSERT took {explained:.0f} ms, {checks:.0f} ms of them in "
        "PostgreSQL's foreign-key checks (notification → (submission, cycle) and member part), "
        "which the bare table does not have.",
        "- P3 pairs (count, sweep ms): " + ", ".join(
            f"{c * 1000:.1f} / {s * 1000:.0f}" for c, s in zip(counts, sweeps))
        + f". Data: {SWEEP_SUBMISSIONS:,} partners and the cycle opened "
        f"({ledger_rows:,} ledger rows), the invitations of 99 % set to sent in SQL; "
        "the due 1 % are planned invitations. The same sweep as a dry run (reads and decides, "
        "writes nothing): "
        f"{median(dry) * 1000:.0f} ms. Each sweep is rolled back, so every pair does the same "
        "work; its commit is not timed.",
        "- Where the CPU goes, per mail (median of the runs): pipeline "
        + cpu_per_mail(products) + "; baseline " + cpu_per_mail(baselines) + ".",
        "- P7 per run (idle → peak MB): " + ", ".join(
            f"{p.idle_rss / MB:.0f} → {p.peak_rss / MB:.0f}" for p in products) + ".",
    ]
    problems = [f"{kind}: {problem}" for kind, runs in (("baseline", baselines),
                                                          ("product", products))
                for run in runs for problem in run.problems]
    return "\n".join(lines), details + [f"- **Problem** {p}" for p in problems]


def cpu_per_mail(runs: list[FanOut]) -> str:
    kinds = list(runs[0].cpu)
    per_mail = {k: median([r.cpu[k] / r.mails * 1000 for r in runs]) for k in kinds}
    busy = median([sum(r.cpu.values()) / (r.seconds * CORES) for r in runs])
    return (", ".join(f"{k} {v:.2f} ms" for k, v in per_mail.items())
            + f" = {sum(per_mail.values()):.2f} ms CPU per mail, the {CORES} cores "
            f"{busy:.0%} busy with it (other processes on the machine: "
            f"{median([others_share(r) for r in runs]):.0%})")


def write_results(table: str, details: list[str], command: str, started: datetime,
                  pg_version: str):
    key = f"## {PARTNERS:,} partners"
    section = "\n".join([
        f"{key}, {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine()}  ",
        f"Medians of alternating pairs (baseline, product, …): {PAIRS} for P1 and P7, "
        f"{QUICK_PAIRS} for P2 and P3 after warming up; PostgreSQL "
        f"{pg_version} with its default durability (fsync and synchronous commit on), "
        "Redis, smtp-sink and the worker all on this machine. The machine may be shared: what "
        "other processes used during each P1 run is measured (/proc/stat) and shown below.",
        "",
        table,
        "",
        *details,
        "",
    ])
    sections = {}
    if RESULTS.exists():
        current = None
        for line in RESULTS.read_text().splitlines():
            if line.startswith("## "):
                current = line.split(" partners")[0] + " partners"
                sections[current] = []
            if current:
                sections[current].append(line)
    sections[key] = section.splitlines()
    ordered = sorted(sections.items(), key=lambda item: -int(
        item[0].removeprefix("## ").split()[0].replace(",", "")))
    RESULTS.write_text(
        "# Benchmark results\n\nWritten by `make bench` (bench/run.py); each run replaces the "
        "section of its partner count. P1–P3 and P7 as in issue 8, section 5.\n\n"
        + "\n".join("\n".join(lines).rstrip() + "\n" for _, lines in ordered))


def main():
    started = datetime.now(UTC)
    command = bench_command("python bench/run.py")
    log(f"{command}: {PARTNERS:,} partners, {PAIRS} pairs, {CORES} cores")
    with ExitStack() as exits:
        stack = Stack(exits)
        fan = bench_fanout(stack)
        ledger = bench_ledger(stack)
        sweeping = bench_sweep(stack)
        pg_version = stack.pg.bindir.parent.name
    table, details = report(fan, ledger, sweeping)
    print()
    print(table)
    print()
    print("\n".join(details))
    write_results(table, details, command, started, pg_version)
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
