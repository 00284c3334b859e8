"""`make bench`, the web pages: p95 latency per endpoint against `/healthz` on the same server.

P5  the cycle overview `/cycles/<id>` and a filtered partner table
    `/cycles/<id>/partners?overdue=1&sort=-level&page=3`, signed in as a coordinator;
P6  the partner's form GET `/r/<token>/form` and a draft POST (save with the CSRF token);
each against `/healthz` (one `SELECT 1`), target p95 within 3×.

A throwaway PostgreSQL (bench/servers.py) holds N partners (default 20,000) with last year's
cycle accepted and this year's cycle opened and past its deadline, its submissions in every state
(drafts, submitted, accepted, returned, exempted, overdue at escalation levels 0–3, extension
requests, failed mails). gunicorn runs as docker-compose.yml runs it (3 workers × 4 threads, Redis
as broker and rate-limit store) on a free loopback port. 16 clients at once, threads in 4
processes of their own, each with a keep-alive `http.client` connection and its own session
cookie (a partner's own link and draft; the coordinator signed in through `/login`), send a fixed
number of requests per endpoint.
Rounds alternate (`/healthz`, then each endpoint, …); each figure is the median over the rounds of
that round's p95 and of its ratio to that round's `/healthz` p95. Pages that answer 404 are
reported as not built yet.

Environment: BENCH_PARTNERS (20000), BENCH_ROUNDS (5), BENCH_REQUESTS (320 per endpoint and
round), BENCH_CLIENTS (16).
"""
from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as clock
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import case, insert, literal, select, text, update  # noqa: E402

from bench.servers import (Postgres, Redis, bench_command, free_port, machine_busy,  # noqa: E402
                           wait_for_port)
from infra.migrate import upgrade  # noqa: E402
from infra.settings import Settings  # noqa: E402
from reportcycles.bootstrap import build  # noqa: E402
from workflow.cycles import get_programme, open_cycle  # noqa: E402
from workflow.models import (Cycle, Event, ExtensionRequest, Notification,  # noqa: E402
                             NotificationStatus, ReportTemplate, Submission, SubmissionState)
from workflow.partners import ensure_programme, import_partners  # noqa: E402
from workflow.report_templates import load_template  # noqa: E402
from workflow.submissions import issue_link_token  # noqa: E402
from workflow.users import create_account, set_password  # noqa: E402

TEMPLATE = ROOT / "reportcycles" / "data" / "report_templates" / "nrw-vielfalt-2027.json"
RESULTS = ROOT / "bench" / "RESULTS.md"
BERLIN = ZoneInfo("Europe/Berlin")
LAST_YEAR, YEAR = 2025, 2026  # this year's deadline has passed: there are overdue partners
PARTNERS = int(os.environ.get("BENCH_PARTNERS", "20000"))
ROUNDS = max(3, int(os.environ.get("BENCH_ROUNDS", "5")))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "16"))
PROCESSES = min(CLIENTS, 4)  # the clients' processes
REQUESTS = int(os.environ.get("BENCH_REQUESTS", str(CLIENTS * 20)))
TARGET = 3.0
COORDINATOR, PASSWORD = "koordination@example.org", "ein langes Passwort für den Benchmark"
PARTNER_CSV = ("name,kind,contact_name,contact_email,deputy_email,head_name,head_email,language,"
               "joined_on\nPartner 000000,Kommune,Kira Kontakt,kontakt@example.org,"
               "vertretung@example.org,Hanna Leitung,leitung@example.org,de,2019-01-01\n")
ANSWERS = {
    "reporting_person": "Kira Kontakt", "staff_total": "1200", "staff_immigration_share": "18,5",
    "share_surveyed": "yes", "share_method": "survey", "staff_trained": "140",
    "trainings_held": "12", "training_formats": ["in_person", "online"],
    "training_description": "Workshops zu interkultureller Kompetenz für alle Führungskräfte.",
    "trainees_total": "40", "trainees_immigration": "12", "selection_criterion": "yes",
    "selection_procedures": "some", "selection_decision_date": "2026-03-01",
    "welcome_culture": "Patenschaften für neue Kolleginnen und Kollegen.",
    "plans_next_year": "Mehrsprachige Stellenanzeigen und ein Mentoring-Programm.",
    "budget_eur": "25.000"}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
VERSION = re.compile(r'name="version" value="(\d+)"')


def log(message: str):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# Data ----------------------------------------------------------------------------------------

def berlin(day: date, hour: int = 8, minute: int = 30) -> datetime:
    return datetime.combine(day, clock(hour, minute), tzinfo=BERLIN)


def seed(pg: Postgres, database: str, env: dict) -> dict:
    """N partners, last year's cycle accepted, this year's opened and overdue in every state."""
    from bench.run import _copy_partner

    pg.create_database(database)
    upgrade(pg.url(database))
    os.environ.update(env)
    services = build(Settings.from_env(), "celery")
    definition = json.loads(TEMPLATE.read_text(encoding="utf-8"))
    try:
        with services.database.unit_of_work() as uow:
            programme = ensure_programme(uow, coordinator_emails=(COORDINATOR,))
            import_partners(uow, programme, PARTNER_CSV)
            for year in (LAST_YEAR, YEAR):
                load_template(uow, programme, {**definition, "year": year})
            _copy_partner(uow.session, PARTNERS - 1)
            uow.commit()
        cycles = {}
        for year in (LAST_YEAR, YEAR):
            opens, due = date(year, 2, 2), date(year, 4, 30)
            with services.database.unit_of_work() as uow:
                cycles[year] = open_cycle(uow, get_programme(uow), year,
                                          now=berlin(opens, 7, 0), opens_on=opens,
                                          due_on=due).id
                uow.commit()
        with services.database.unit_of_work() as uow:
            _set_states(uow.session, cycles[LAST_YEAR], cycles[YEAR])
            uow.commit()
        pg.sql("VACUUM ANALYZE", database)
        with services.database.unit_of_work() as uow:
            # Each client its own partner, with a draft and last year's accepted report.
            drafts = uow.session.scalars(
                select(Submission).where(Submission.cycle_id == cycles[YEAR],
                                         Submission.state == SubmissionState.DRAFT)
                .order_by(Submission.id).offset(PARTNERS // 10).limit(CLIENTS + 1)).all()
            tokens = [issue_link_token(uow, submission, notification_id=None,
                                       now=datetime.now(UTC)) for submission in drafts]
            account = create_account(uow, COORDINATOR, "coordinator", now=datetime.now(UTC),
                                     actor="bench")
            set_password(uow, account.id, PASSWORD, now=datetime.now(UTC))
            uow.commit()
        with services.database.unit_of_work() as uow:
            counts = dict(uow.session.execute(
                select(Submission.state, text("count(*)")).where(
                    Submission.cycle_id == cycles[YEAR]).group_by(Submission.state)).all())
            ledger = uow.session.scalar(text("SELECT count(*) FROM notification"))
        return {"cycle_id": cycles[YEAR], "tokens": tokens,
                "states": {str(k): v for k, v in sorted(counts.items(), key=lambda kv: -kv[1])},
                "ledger_rows": ledger}
    finally:
        services.database.dispose()


def _set_states(session, last_cycle: int, cycle: int):
    """States set in SQL (as years of partners' clicks would leave them), with their events."""
    S = SubmissionState
    session.execute(update(Submission).where(Submission.cycle_id == last_cycle).values(
        state=S.ACCEPTED, answers=ANSWERS, submitted_at=datetime(LAST_YEAR, 4, 1, 9, tzinfo=UTC)))
    bucket = Submission.id % 100
    state = case((bucket < 20, S.SUBMITTED.value), (bucket < 28, S.ACCEPTED.value),
                 (bucket < 31, S.RETURNED.value), (bucket < 33, S.EXEMPTED.value),
                 (bucket < 58, S.DRAFT.value), (bucket < 63, S.OPENED.value),
                 else_=S.INVITED.value)
    mine = Submission.cycle_id == cycle
    for value in S:
        session.execute(update(Submission).where(mine, state == value.value)
                        .values(state=value))
    done = Submission.state.in_([S.SUBMITTED, S.ACCEPTED, S.RETURNED])
    session.execute(update(Submission).where(mine, done).values(
        answers=ANSWERS, version=2,
        submitted_at=text(f"timestamp '{YEAR}-02-09 09:00' + (id % 120) * interval '1 day'")))
    session.execute(update(Submission).where(mine, Submission.state == S.DRAFT).values(
        answers={k: v for k, v in list(ANSWERS.items())[:8]}, version=1))
    session.execute(update(Submission).where(mine, Submission.state == S.RETURNED).values(
        review_comments={"_general": "Bitte die Zahl der Schulungen prüfen."}))
    # A saved report is pinned to the template it was written on (as save_draft does).
    session.execute(update(Submission).where(Submission.answers.isnot(None)).values(
        template_id=select(ReportTemplate.id).where(ReportTemplate.year == Cycle.year,
                                                    Cycle.id == Submission.cycle_id)
        .scalar_subquery()))
    owing = Submission.state.in_([S.INVITED, S.OPENED, S.DRAFT])
    session.execute(update(Submission).where(mine, owing).values(
        escalation_level=Submission.id % 4))
    for kind, states in (("submitted", [S.SUBMITTED, S.ACCEPTED, S.RETURNED]),
                         ("draft_saved", [S.DRAFT]), ("exempted", [S.EXEMPTED])):
        session.execute(insert(Event).from_select(
            ["cycle_id", "submission_id", "kind", "at", "actor"],
            select(Submission.cycle_id, Submission.id, literal(kind),
                   text(f"timestamp '{YEAR}-02-09 09:00' + (id % 120) * interval '1 day'"),
                   literal("partner")).where(mine, Submission.state.in_(states))))
    session.execute(insert(ExtensionRequest).from_select(
        ["submission_id", "reason", "proposed_due", "created_at"],
        select(Submission.id, literal("Personalwechsel"), literal(date(YEAR, 6, 30)),
               literal(datetime(YEAR, 4, 20, tzinfo=UTC)))
        .where(mine, Submission.state == S.DRAFT, Submission.id % 500 == 7)))
    session.execute(update(Notification).where(
        Notification.submission_id.in_(select(Submission.id).where(
            mine, Submission.id % 700 == 3)), Notification.rung == "invitation")
        .values(status=NotificationStatus.FAILED, last_error="550 mailbox unavailable"))


# The server ----------------------------------------------------------------------------------

def start_gunicorn(env: dict, port: int, logfile: Path) -> subprocess.Popen:
    """gunicorn as docker-compose.yml runs it, on loopback."""
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "3",
             "--threads", "4", "--timeout", "120", "reportcycles.wsgi:create_app()"],
            cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    wait_for_port(port, proc, timeout=60)
    return proc


class Browser:
    """One client: a keep-alive connection and its cookies."""

    def __init__(self, port: int, cookies: dict | None = None):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.cookies: dict[str, str] = dict(cookies or {})

    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str | None = None, *,
                keep_cookies: bool = True) -> tuple[int, str, float]:
        headers = {"Connection": "keep-alive"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if content_type:
            headers["Content-Type"] = content_type
        start = time.perf_counter()
        try:
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
            data = response.read()
        except (http.client.HTTPException, OSError):
            self.conn.close()  # the server closed a kept connection: once more on a new one
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            start = time.perf_counter()
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
            data = response.read()
        elapsed = time.perf_counter() - start
        for header in (response.headers.get_all("Set-Cookie") or []) if keep_cookies else []:
            name, _, rest = header.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        return response.status, data.decode("utf-8", "replace"), elapsed

    def get(self, path: str):
        return self.request("GET", path)

    def post_form(self, path: str, fields: dict, *, multipart: bool = False, **options):
        if not multipart:
            return self.request("POST", path, urlencode(fields, doseq=True).encode(),
                                "application/x-www-form-urlencoded", **options)
        boundary = uuid.uuid4().hex
        parts = []
        for name, value in fields.items():
            for one in value if isinstance(value, list) else [value]:
                parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'
                             f'\r\n\r\n{one}\r\n')
        parts.append(f"--{boundary}--\r\n")
        return self.request("POST", path, "".join(parts).encode(),
                            f"multipart/form-data; boundary={boundary}", **options)


@dataclass
class Partner:
    """A partner's browser on its own form: the CSRF token and the draft's version."""
    browser: Browser
    token: str
    csrf: str = ""
    version: int = 0

    def open_form(self):
        status, html, _ = self.browser.get(f"/r/{self.token}/form")
        if status != 200:
            raise RuntimeError(f"the form answered {status}")
        self.csrf = CSRF.search(html).group(1)
        self.version = int(VERSION.search(html).group(1))

    def read_form(self) -> tuple[int, float]:
        status, _, elapsed = self.browser.get(f"/r/{self.token}/form")
        return status, elapsed

    def save_draft(self) -> tuple[int, float]:
        # What the browser posts for "Entwurf speichern": every field of the form, multipart.
        # The browser then follows the redirect, whose page takes the "saved" notice out of the
        # session again: so the session cookie of the answer is not kept.
        status, _, elapsed = self.browser.post_form(
            f"/r/{self.token}/form", {"csrf_token": self.csrf, "version": self.version,
                                      "action": "save", **ANSWERS,
                                      "staff_total": str(1000 + self.version)},
            multipart=True, keep_cookies=False)
        if status == 303:
            self.version += 1
        return status, elapsed


@dataclass
class Endpoint:
    name: str
    path: str
    expected: int
    available: bool = True
    note: str = ""


@dataclass
class Batch:
    latencies: list[float]
    seconds: float
    errors: list[str] = field(default_factory=list)

    @property
    def p95(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(round(0.95 * len(ordered))) - 1)]

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds


def endpoint_list(cycle_id: int) -> list[Endpoint]:
    table = f"/cycles/{cycle_id}/partners?overdue=1&sort=-level&page=3"
    return [Endpoint("/healthz", "/healthz", 200),
            Endpoint("P6 form GET", "/r/<token>/form", 200),
            Endpoint("P6 draft POST", "/r/<token>/form (action=save)", 303),
            Endpoint("P5 cycle overview", f"/cycles/{cycle_id}", 200),
            Endpoint("P5 partner table", table, 200)]


def client_calls(port: int, token: str, coordinator: dict, cycle_id: int) -> dict:
    """One client's way of calling each endpoint: (status, seconds)."""
    health, coordinating = Browser(port), Browser(port, coordinator)
    partner = Partner(Browser(port), token)
    partner.open_form()
    table = f"/cycles/{cycle_id}/partners?overdue=1&sort=-level&page=3"

    def get(browser, path):
        def call():
            status, _, seconds = browser.get(path)
            return status, seconds
        return call

    return {"/healthz": get(health, "/healthz"), "P6 form GET": partner.read_form,
            "P6 draft POST": partner.save_draft,
            "P5 cycle overview": get(coordinating, f"/cycles/{cycle_id}"),
            "P5 partner table": get(coordinating, table)}


def client_process(pipe, port: int, tokens: list[str], coordinator: dict, cycle_id: int,
                   expected: dict):
    """A few clients in a process of their own (one Python process cannot keep 16 busy)."""
    calls = [client_calls(port, token, coordinator, cycle_id) for token in tokens]
    pipe.send("ready")
    while (order := pipe.recv()) is not None:
        name, shares = order
        latencies, errors = [], []
        go = threading.Barrier(len(calls))

        def client(index: int):
            go.wait()
            for _ in range(shares[index]):
                try:
                    status, seconds = calls[index][name]()
                except Exception as exc:  # counted, and the run says so
                    errors.append(repr(exc))
                    continue
                latencies.append(seconds)
                if status != expected[name]:
                    errors.append(f"HTTP {status}")

        threads = [threading.Thread(target=client, args=(n,)) for n in range(len(calls))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        pipe.send((latencies, errors))


class Clients:
    """CLIENTS clients in PROCESSES processes, each client with its own connection, cookies and
    partner; a batch runs ``count`` requests of one endpoint spread over all of them."""

    def __init__(self, port: int, data: dict, coordinator: dict, found: list[Endpoint]):
        context = multiprocessing.get_context("fork")
        expected = {e.name: e.expected for e in found}
        groups = [list(range(n, CLIENTS, PROCESSES)) for n in range(PROCESSES)]
        self.sizes = [len(group) for group in groups]
        self.pipes, self.processes = [], []
        for group in groups:
            mine, theirs = context.Pipe()
            process = context.Process(target=client_process, args=(
                theirs, port, [data["tokens"][i] for i in group], coordinator,
                data["cycle_id"], expected), daemon=True)
            process.start()
            self.pipes.append(mine)
            self.processes.append(process)
        for pipe in self.pipes:
            if pipe.recv() != "ready":
                raise RuntimeError("a client process did not start")

    def batch(self, name: str, count: int) -> Batch:
        shares = [count // CLIENTS + (1 if n < count % CLIENTS else 0) for n in range(CLIENTS)]
        start = time.perf_counter()
        offset = 0
        for pipe, size in zip(self.pipes, self.sizes):
            pipe.send((name, shares[offset:offset + size]))
            offset += size
        latencies, errors = [], []
        for pipe in self.pipes:
            got, failed = pipe.recv()
            latencies += got
            errors += failed
        return Batch(latencies, time.perf_counter() - start, errors)

    def close(self):
        for pipe in self.pipes:
            pipe.send(None)
        for process in self.processes:
            process.join(30)


def sign_in(port: int) -> dict:
    coordinator = Browser(port)
    _, html, _ = coordinator.get("/login")
    status, _, _ = coordinator.post_form("/login", {"csrf_token": CSRF.search(html).group(1),
                                                    "email": COORDINATOR, "password": PASSWORD})
    if status != 303:
        raise RuntimeError(f"signing in answered {status}, not 303")
    return coordinator.cookies


def probe(port: int, data: dict, coordinator: dict) -> list[Endpoint]:
    """Which pages are there and answer as they should (a page not built yet answers 404)."""
    found = endpoint_list(data["cycle_id"])
    calls = client_calls(port, data["tokens"][-1], coordinator, data["cycle_id"])
    for endpoint in found:
        status, _ = calls[endpoint.name]()
        if status == 404:
            endpoint.available, endpoint.note = False, "not built yet (404)"
        elif status != endpoint.expected:
            endpoint.available, endpoint.note = False, f"answers HTTP {status}"
    return found


# Run -----------------------------------------------------------------------------------------

def median(values):
    return statistics.median(values) if values else float("nan")


def machine() -> str:
    import platform
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip().split(" ")[0] + " " + \
                    line.split(":", 1)[1].strip().split(" ")[1]
                break
    except OSError:
        pass
    return (f"{len(os.sched_getaffinity(0))} cores (`nproc`), {cpu}, {memory:.1f} GiB RAM, "
            f"Python {platform.python_version()}, Linux {platform.release()}")


def main():
    started = datetime.now(UTC)
    command = bench_command("python bench/pages.py")
    log(f"{command}: {PARTNERS:,} partners, {ROUNDS} rounds of {REQUESTS} requests per "
        f"endpoint, {CLIENTS} clients")
    with ExitStack() as exits:
        tmp = Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="rc-bench-pages-")))
        pg = Postgres().start()
        exits.callback(pg.stop)
        redis = Redis().start()
        exits.callback(redis.stop)
        env = {"DATABASE_URL": pg.url("pages"), "CELERY_BROKER_URL": redis.url,
               "SMTP_URL": f"smtp://127.0.0.1:{free_port()}", "BASE_URL": "http://127.0.0.1",
               "INSTANCE_PATH": str(tmp / "instance"), "SECRET_KEY": "bench",
               "COORDINATOR_EMAILS": COORDINATOR, "TRUSTED_PROXIES": "0"}
        load_before = os.getloadavg()[0]
        log(f"seeding {PARTNERS:,} partners, two cycles")
        began = time.perf_counter()
        data = seed(pg, "pages", env)
        data["load_before"] = load_before
        log(f"seeded in {time.perf_counter() - began:.0f} s: {data['ledger_rows']:,} ledger "
            f"rows; this year's states {data['states']}")
        port = free_port()
        server = start_gunicorn(env, port, tmp / "gunicorn.log")

        def stop_server():
            server.terminate()
            server.wait(30)
        exits.callback(stop_server)
        coordinator = sign_in(port)
        found = probe(port, data, coordinator)
        for endpoint in found:
            if not endpoint.available:
                log(f"{endpoint.name} {endpoint.path}: {endpoint.note}")
        live = [e for e in found if e.available]
        clients = Clients(port, data, coordinator, found)
        exits.callback(clients.close)
        for endpoint in live:  # warm up: every worker has loaded templates and connections
            clients.batch(endpoint.name, CLIENTS * 3)
        batches: dict[str, list[Batch]] = {e.name: [] for e in live}
        busy_before = machine_busy()
        measured_from = time.perf_counter()
        for round_ in range(1, ROUNDS + 1):
            for endpoint in live:
                batch = clients.batch(endpoint.name, REQUESTS)
                batches[endpoint.name].append(batch)
                log(f"round {round_}: {endpoint.name:18} p95 {batch.p95 * 1000:7.1f} ms, "
                    f"median {statistics.median(batch.latencies) * 1000:6.1f} ms, "
                    f"{batch.rate:6.0f} req/s"
                    + (f", {len(batch.errors)} errors: {batch.errors[:3]}" if batch.errors
                       else ""))
        load = (machine_busy() - busy_before) / (time.perf_counter() - measured_from) / \
            len(os.sched_getaffinity(0))
        errors = sum(len(b.errors) for runs in batches.values() for b in runs)
        if errors:
            log(f"{errors} requests failed: see {tmp / 'gunicorn.log'}")
            print((tmp / "gunicorn.log").read_text()[-3000:])
    table, details = report(found, batches, data, load)
    print()
    print(table)
    print()
    print("\n".join(details))
    write_results(table, details, command, started)
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")
    if errors:
        sys.exit(1)


def report(found: list[Endpoint], batches: dict[str, list[Batch]], data: dict, load: float):
    health = batches["/healthz"]
    rows = ["| # | endpoint | p95 | median | req/s | `/healthz` p95 (same rounds) | ratio | "
            "target | |", "|---|---|---|---|---|---|---|---|---|"]
    details = []
    for endpoint in found[1:]:
        number = endpoint.name.split()[0]
        if not endpoint.available:
            rows.append(f"| {number} | {endpoint.name[3:]}: `{endpoint.path}` | "
                        f"{endpoint.note} | | | | | ≤ {TARGET:g}× | not measured |")
            continue
        runs = batches[endpoint.name]
        ratios = [run.p95 / base.p95 for run, base in zip(runs, health)]
        ratio = median(ratios)
        rows.append(
            f"| {number} | {endpoint.name[3:]}: `{endpoint.path}` | "
            f"{median([r.p95 for r in runs]) * 1000:.1f} ms | "
            f"{median([statistics.median(r.latencies) for r in runs]) * 1000:.1f} ms | "
            f"{median([r.rate for r in runs]):.0f} | {median([b.p95 for b in health]) * 1000:.1f}"
            f" ms | {ratio:.2f}× | ≤ {TARGET:g}× | {'met' if ratio <= TARGET else '**not met**'} |")
        details.append(f"- {endpoint.name} per round (p95 ms endpoint / `/healthz`): " + ", ".join(
            f"{run.p95 * 1000:.1f} / {base.p95 * 1000:.1f}" for run, base in zip(runs, health))
            + "; ratios " + ", ".join(f"{r:.2f}" for r in ratios) + ".")
    details.append(f"- `/healthz` answered {median([b.rate for b in health]):.0f} requests/s "
                   f"(median), p95 {median([b.p95 for b in health]) * 1000:.1f} ms.")
    details.append(f"- Data: {PARTNERS:,} partners (three contacts each); last year's cycle "
                   f"accepted, this year's opened and past its deadline: "
                   + ", ".join(f"{k} {v:,}" for k, v in data["states"].items())
                   + f"; {data['ledger_rows']:,} ledger rows. The partners' drafts are their "
                   "own: each client saves its own report (every field, multipart, as the "
                   "browser sends it) and reads its own form.")
    details.append(f"- The machine's cores were {load:.0%} busy during the rounds (everything "
                   "on it: gunicorn, PostgreSQL, these clients and anything else running); load "
                   f"average before the run: {data['load_before']:.1f}.")
    return "\n".join(rows), details


def write_results(table: str, details: list[str], command: str, started: datetime):
    """Replace this benchmark's section of its partner count; keep every other section. Its
    heading avoids the word bench/run.py keys its own sections by ("N partners")."""
    key = f"## {PARTNERS:,} partner records: web pages (P5, P6)"
    section = "\n".join([
        f"{key}, {started:%Y-%m-%d %H:%M} UTC", "",
        f"Command: `{command}` (bench/pages.py)  ",
        f"Machine: {machine()}  ",
        f"gunicorn as in docker-compose.yml (3 workers × 4 threads) on loopback, PostgreSQL and "
        f"Redis on this machine; {CLIENTS} concurrent clients with keep-alive (threads in "
        f"{PROCESSES} processes), {REQUESTS} "
        f"requests per endpoint and round, {ROUNDS} alternating rounds (`/healthz`, then each "
        "endpoint); medians over the rounds of each round's p95 and of its ratio to that "
        "round's `/healthz` p95.", "",
        table, "", *details, ""])
    text_ = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    kept, skipping = [], False
    for line in text_.splitlines():
        if line.startswith("## "):
            skipping = line.startswith(key)
        if not skipping:
            kept.append(line)
    RESULTS.write_text("\n".join(kept).rstrip() + "\n\n" + section)


if __name__ == "__main__":
    main()
