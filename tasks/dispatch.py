"""The dispatcher the unit of work calls after commit: queued ledger rows become Celery tasks."""
from __future__ import annotations

from datetime import datetime

from celery import Celery

SEND_BATCH = "reportcycles.send_batch"


class CeleryDispatcher:
    def __init__(self, app: Celery, batch_size: int = 50):
        self.app = app
        self.batch_size = batch_size

    def send_notifications(self, ids, as_of: datetime | None = None):
        stamp = as_of.isoformat() if as_of else None
        ids = list(ids)
        with self.app.producer_or_acquire() as producer:
            for start in range(0, len(ids), self.batch_size):
                self.app.send_task(SEND_BATCH, args=[ids[start:start + self.batch_size], stamp],
                                   producer=producer)
