"""The scheduler decides only *when*; the sweep asks the database *what* is due."""
from __future__ import annotations

import functools
import logging
import time
from datetime import datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from infra.bounce_mailbox import fetch_configured
from infra.services import Services
from infra.settings import Settings
from workflow.cycles import open_due_cycles
from workflow.models import utcnow
from workflow.delivery import relay
from workflow.digest import plan_digests
from workflow.retention import apply_retention
from workflow.sweep import SweepResult, sweep

log = logging.getLogger(__name__)


HEARTBEAT = "scheduler-heartbeat"


def heartbeat_age(settings: Settings) -> float | None:
    """Seconds since the scheduler last finished a tick in this instance folder (None: never)."""
    try:
        return max(0.0, time.time() - (settings.instance_dir / HEARTBEAT).stat().st_mtime)
    except FileNotFoundError:
        return None


def _beat(settings: Settings):
    settings.instance_dir.mkdir(parents=True, exist_ok=True)
    (settings.instance_dir / HEARTBEAT).touch()


def _beating(job):
    """The scheduler's job, then its sign of life (``reportcycles health scheduler``): only the
    scheduler beats, not a sweep or relay run by hand."""
    @functools.wraps(job)
    def run(services: Services):
        result = job(services)
        _beat(services.settings)
        return result
    return run


def tick(services: Services, now: datetime | None = None) -> SweepResult:
    """Open cycles that are due, plan the day's digests, then sweep. Safe to run from several
    processes at once."""
    now = now or utcnow()
    with services.database.unit_of_work() as uow:
        for cycle in open_due_cycles(uow, now):
            log.info("opened cycle %s", cycle.year)
        uow.commit()
    with services.database.unit_of_work() as uow:
        uow.lock("digest")
        plan_digests(uow, now)
        uow.commit()
    with services.database.unit_of_work() as uow:
        result = sweep(uow, now)
        uow.commit()
    if result.mails:
        log.info("sweep at %s: %d to send, %d skipped, %d cancelled", now.isoformat(),
                 result.count("send"), result.count("skip"), result.count("cancel"))
    return result


def relay_outbox(services: Services) -> list[int]:
    with services.database.unit_of_work() as uow:
        ids = relay(uow, lease_seconds=services.settings.send_lease_seconds,
                    dispatch_lease_seconds=services.settings.dispatch_lease_seconds,
                    broker_backlog=services.database.dispatcher.backlog())
        uow.commit()
    if ids:
        log.info("relay re-dispatched %d notifications", len(ids))
    return ids


def care_for_data(services: Services, now: datetime | None = None):
    """The programmes' retention rule: old send logs and links, contacts of partners that left."""
    with services.database.unit_of_work() as uow:
        uow.lock("retention")
        results = apply_retention(uow, now=now or utcnow())
        uow.commit()
    for result in results:
        if result.changed:
            log.info("retention in %s: %d mail copies blanked, %d links deleted, %d contacts "
                     "erased", result.programme, result.mails_blanked, result.links_deleted,
                     result.contacts_erased)
    return results


def make_scheduler(services: Services, *, background: bool = False):
    """Interval jobs in UTC; a missed tick is caught up by the next sweep, never lost."""
    cls = BackgroundScheduler if background else BlockingScheduler
    scheduler = cls(timezone="UTC", job_defaults={
        "coalesce": True, "max_instances": 1, "misfire_grace_time": None})
    settings = services.settings
    scheduler.add_job(_beating(tick), "interval", args=[services],
                      seconds=settings.sweep_interval_seconds, id="sweep", next_run_time=utcnow())
    scheduler.add_job(_beating(relay_outbox), "interval", args=[services],
                      seconds=settings.relay_interval_seconds, id="relay")
    scheduler.add_job(care_for_data, "interval", args=[services], hours=6, id="retention")
    if settings.bounce_maildir is not None:  # in the sweep's rhythm: marked before the next rung
        scheduler.add_job(fetch_configured, "interval", args=[services],
                          seconds=settings.sweep_interval_seconds, id="bounces")
    return scheduler
