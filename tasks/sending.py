"""Celery tasks: thin adapters over workflow.sending."""
from __future__ import annotations

import logging
from datetime import datetime
from functools import lru_cache

from sqlalchemy.exc import OperationalError

from reportcycles.bootstrap import Services, build
from tasks.celery_app import celery_app
from tasks.dispatch import SEND_BATCH
from workflow.sending import deliver

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def services() -> Services:
    """Built on the first task, in the worker process, never at import time."""
    return build()


@celery_app.task(name=SEND_BATCH, acks_late=True, autoretry_for=(OperationalError,),
                 retry_backoff=True, retry_backoff_max=300, max_retries=10)
def send_batch(ids: list[int], as_of: str | None = None) -> dict:
    """Deliver ledger rows; each row is claimed, sent and recorded on its own (idempotent)."""
    report = deliver(services().mail, [int(i) for i in ids],
                     datetime.fromisoformat(as_of) if as_of else None)
    summary = {k: len(v) for k, v in vars(report).items()}
    log.info("send_batch %s", summary)
    return summary
