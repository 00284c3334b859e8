"""The dispatcher the unit of work calls after commit: queued ledger rows become Celery tasks."""
from __future__ import annotations

from datetime import datetime

from celery import Celery
from kombu.exceptions import ChannelError, OperationalError

SEND_BATCH = "reportcycles.send_batch"


class CeleryDispatcher:
    def __init__(self, app: Celery, batch_size: int):
        self.app = app
        self.batch_size = batch_size

    def send_notifications(self, ids, as_of: datetime | None = None):
        stamp = as_of.isoformat() if as_of else None
        ids = list(ids)
        with self.app.producer_or_acquire() as producer:
            for start in range(0, len(ids), self.batch_size):
                self.app.send_task(SEND_BATCH, args=[ids[start:start + self.batch_size], stamp],
                                   producer=producer)

    def backlog(self) -> int | None:
        """Messages waiting in the default queue (0 also when the broker lost the queue)."""
        queue = self.app.conf.task_default_queue
        try:
            with self.app.connection_for_read() as connection:
                return connection.default_channel.queue_declare(
                    queue=queue, passive=True).message_count
        except ChannelError:
            return 0  # no such queue: nothing waits (Redis drops an empty list)
        except (OperationalError, OSError):
            return None
