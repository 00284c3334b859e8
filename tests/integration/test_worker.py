"""PostgreSQL + a real Redis broker + real `celery worker` processes + a real SMTP server."""
from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time

import pytest
from sqlalchemy import and_, case, func, select

from reportcycles.bootstrap import build
from tasks.celery_app import VISIBILITY_TIMEOUT
from tasks.scheduler import relay_outbox
from tests.integration.conftest import berlin, make_settings, seed_programme
from tests.support.servers import CeleryWorker
from workflow.cycles import get_programme, open_cycle
from workflow.events import EventKind
from workflow.models import Event, Handover, Notification
from workflow.policy import END_OF_DAY, ReportingPolicy
from workflow.sweep import sweep

pytestmark = pytest.mark.slow
OPENS, DUE = date(2027, 2, 1), date(2027, 4, 30)


@pytest.fixture(autouse=True)
def no_task_waits_in_the_broker():
    """The guard the ledger relies on: no task is published with an ETA beyond half the broker's
    visibility timeout (Redis would hand it out a second time)."""
    from celery.signals import before_task_publish

    published = []

    def check(headers=None, **_):
        published.append(headers.get("eta"))

    before_task_publish.connect(check, weak=False)
    yield
    before_task_publish.disconnect(check)
    etas = [eta for eta in published if eta is not None]
    assert not etas or max(datetime.fromisoformat(e) - datetime.now(UTC) for e in etas) < \
        timedelta(seconds=VISIBILITY_TIMEOUT / 2), etas
    assert published, "the guard saw no task published"


@pytest.fixture
def stack(monkeypatch, tmp_path, postgres_url, smtp, redis_server):
    """Services that dispatch to Celery over Redis, and a factory for worker processes."""
    settings, env = make_settings(monkeypatch, tmp_path, postgres_url, smtp[0].port,
                                  broker=redis_server.url, SEND_LEASE_SECONDS=3,
                                  DISPATCH_LEASE_SECONDS=2,
                                  SEND_BATCH_SIZE=20)
    services = build(settings, "celery")
    workers = []

    def start_worker(concurrency=2):
        worker = CeleryWorker(env, concurrency=concurrency,
                              logfile=tmp_path / f"worker{len(workers)}.log").start()
        workers.append(worker)
        return worker

    yield services, start_worker
    for worker in workers:
        worker.stop()
    services.database.dispose()


# These tests run in real time: the relay hands mails out again *now*, so the programme sends at
# any hour (the window itself is tested in test_delivery.py).
ALL_DAY = ReportingPolicy(window_start=clock_time(0, 0), window_end=END_OF_DAY,
                          window_working_days_only=False)


def open_and_sweep(services, partners):
    seed_programme(services, partners=partners, policy=ALL_DAY)
    with services.database.unit_of_work() as uow:
        open_cycle(uow, get_programme(uow), 2027, now=berlin(OPENS, 7), opens_on=OPENS,
                   due_on=DUE)
        uow.commit()
    with services.database.unit_of_work() as uow:
        result = sweep(uow, berlin(OPENS))
        uow.commit()
    return result


def ledger(services) -> Counter:
    """The invitations by status; a planned row the sweep handed to the workers as 'handed over'."""
    with services.database.unit_of_work() as uow:
        handed_over = and_(Notification.status == "planned",
                           Handover.notification_id.is_not(None))
        status = case((handed_over, "handed over"), else_=Notification.status)
        return Counter({str(k): v for k, v in uow.session.execute(
            select(status, func.count())
            .outerjoin(Handover, Handover.notification_id == Notification.id)
            .where(Notification.rung == "invitation")
            .group_by(status)).all()})


def wait_until(predicate, timeout, step=0.25, tick=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tick:
            tick()
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def message_ids(handler) -> Counter:
    with handler.lock:
        return Counter(m["message"]["Message-ID"] for m in handler.messages)


def test_sweep_hands_invitations_to_a_real_worker_over_redis(stack, smtp):
    services, start_worker = stack
    _, handler = smtp
    start_worker()
    assert open_and_sweep(services, 120).count("send") == 120
    assert wait_until(lambda: ledger(services)["sent"] == 120, 90), ledger(services)
    ids = message_ids(handler)
    assert len(ids) == 120 and set(ids.values()) == {1}


def test_worker_killed_mid_batch_leaves_every_mail_sent_once(stack, smtp, capsys):
    services, start_worker = stack
    _, handler = smtp
    handler.delay = 0.03
    worker = start_worker()
    open_and_sweep(services, 300)
    assert wait_until(lambda: len(handler.messages) >= 60, 60)
    worker.kill()
    in_flight = ledger(services)["sending"]
    sent_before_restart = len(handler.messages)
    start_worker()
    # The relay re-dispatches what the dead worker held once its lease (3 s) runs out.
    assert wait_until(lambda: ledger(services)["sent"] == 300, 120,
                      step=1, tick=lambda: relay_outbox(services)), ledger(services)
    ids = message_ids(handler)
    duplicates = sum(count - 1 for count in ids.values())
    with capsys.disabled():
        print(f"\n[kill test] received before restart {sent_before_restart}, in flight at kill "
              f"{in_flight}, distinct {len(ids)}, duplicates {duplicates}")
    assert len(ids) == 300
    # A duplicate can only be the one mail in flight in each of the two worker processes: sent
    # by the dead worker but not yet recorded.
    assert duplicates <= 2


def test_redis_restarted_empty_loses_no_mail(stack, smtp, redis_server):
    services, start_worker = stack
    _, handler = smtp
    open_and_sweep(services, 80)  # handed over through Redis, no worker running yet
    redis_server.restart_empty()
    start_worker()
    time.sleep(1)
    assert ledger(services)["handed over"] == 80  # the broker lost every task; the ledger did not
    assert wait_until(lambda: ledger(services)["sent"] == 80, 90, step=1,
                      tick=lambda: relay_outbox(services)), ledger(services)
    ids = message_ids(handler)
    assert len(ids) == 80 and set(ids.values()) == {1}


class KillingHandler:
    """Kills the worker at a chosen point of the SMTP dialogue of the n-th mail."""

    def __init__(self, handler, point: str, nth: int):
        self.handler, self.point, self.nth = handler, point, nth
        self.worker, self.mails, self.done = None, 0, False

    def _kill(self):
        if not self.done and self.worker is not None:
            self.done = True
            self.worker.kill()

    async def handle_MAIL(self, server, session, envelope, address, options):
        self.mails += 1
        if self.point == "after_commit" and self.mails == self.nth + 1:
            self._kill()  # mail n was recorded before mail n+1 began
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, options):
        if self.point == "before_smtp" and self.mails == self.nth:
            self._kill()
            return "451 4.3.0 going away"
        return await self.handler.handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server, session, envelope):
        reply = await self.handler.handle_DATA(server, session, envelope)
        if self.point == "after_250" and self.mails == self.nth:
            self._kill()  # the server has the mail; the worker dies before it can record it
        return reply


@pytest.mark.parametrize(("point", "nth"), [
    ("before_smtp", 7), ("after_250", 5), ("after_250", 17), ("after_commit", 11)])
def test_a_worker_killed_at_any_point_leaves_every_mail_sent_once_in_the_ledger(
        stack, smtp, point, nth):
    """SIGKILL before SMTP, between the server's 250 and the commit, and after the commit. The
    ledger has every key sent once; only the 250→commit gap can give the server an extra copy,
    and that copy is flagged."""
    services, start_worker = stack
    controller, handler = smtp
    killer = KillingHandler(handler, point, nth)
    controller.handler = killer
    killer.worker = start_worker(concurrency=1)
    open_and_sweep(services, 30)
    assert wait_until(lambda: killer.done, 60), f"the worker never reached mail {nth}"
    start_worker(concurrency=1)
    assert wait_until(lambda: ledger(services)["sent"] == 30, 90, step=1,
                      tick=lambda: relay_outbox(services)), ledger(services)
    assert ledger(services) == {"sent": 30}  # nothing stuck in 'sending'
    ids = message_ids(handler)
    duplicates = {mid for mid, count in ids.items() if count > 1}
    assert len(ids) == 30
    if point == "after_250":
        assert len(duplicates) <= 1
        with services.database.unit_of_work() as uow:
            flagged = {e.payload["message_id"] for e in uow.session.scalars(
                select(Event).where(Event.kind == EventKind.NOTIFICATION_SENT))
                if e.payload.get("possible_duplicate")}
        assert duplicates <= flagged
    else:
        assert duplicates == set()


def test_redis_down_while_a_cycle_opens_and_partners_submit_loses_nothing(stack, smtp,
                                                                        redis_server):
    from workflow.states import Action
    from workflow.submissions import apply_action
    services, start_worker = stack
    _, handler = smtp
    redis_server.stop()
    # The cycle opens and its invitations are handed over; giving them to Redis fails after commit.
    open_and_sweep(services, 3)
    with services.database.unit_of_work() as uow:
        first = uow.session.scalar(select(Notification.submission_id).where(
            Notification.rung == "invitation").order_by(Notification.id).limit(1))
        apply_action(uow, first, Action.SUBMIT, now=berlin(OPENS, 10), actor="partner")
        uow.commit()  # the submission stands, though its receipt cannot reach Redis now
    # The submission cancelled its own invitation, handed over and not yet sent.
    assert ledger(services) == {"handed over": 2, "cancelled": 1}
    redis_server.start()
    start_worker()
    assert wait_until(lambda: len(handler.messages) == 3, 60, step=1,
                      tick=lambda: relay_outbox(services))
    rungs = Counter(m["message"]["X-Reportcycles-Rung"] for m in handler.messages)
    assert rungs == {"invitation": 2, "receipt": 1}  # no invitation after the submission
    assert set(message_ids(handler).values()) == {1}


def test_redis_restarted_empty_in_the_middle_of_a_fan_out_loses_nothing(stack, smtp,
                                                                       redis_server):
    services, start_worker = stack
    _, handler = smtp
    handler.delay = 0.01
    start_worker()
    open_and_sweep(services, 400)
    assert wait_until(lambda: len(handler.messages) >= 50, 60)
    redis_server.restart_empty()
    assert wait_until(lambda: ledger(services)["sent"] == 400, 120, step=1,
                      tick=lambda: relay_outbox(services)), ledger(services)
    ids = message_ids(handler)
    assert len(ids) == 400 and sum(c - 1 for c in ids.values()) == 0
