"""Celery tasks: thin adapters over workflow.delivery, registered on the app the composition
root builds. They use that app, never Celery's thread-local "current app" (which, in the
embedded worker thread, is Celery's default app)."""
from __future__ import annotations

import logging
from datetime import datetime

from celery import Celery
from sqlalchemy.exc import OperationalError

from tasks.celery_app import services_of
from tasks.dispatch import SEND_BATCH
from workflow.delivery import deliver

log = logging.getLogger(__name__)


def register_tasks(app: Celery):
    @app.task(name=SEND_BATCH, acks_late=True, autoretry_for=(OperationalError,),
              retry_backoff=True, retry_backoff_max=300, max_retries=10)
    def send_batch(ids: list[int], as_of: str | None = None) -> dict:
        """Deliver ledger rows; each row is claimed, sent and recorded on its own (idempotent)."""
        report = deliver(services_of(app).mail, [int(i) for i in ids],
                         datetime.fromisoformat(as_of) if as_of else None)
        summary = {k: len(v) for k, v in vars(report).items()}
        log.info("send_batch %s", summary)
        return summary

    return send_batch
