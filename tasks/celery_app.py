"""The one Celery app, configured from one mapping (Flask's own example does the same)."""
from __future__ import annotations

from celery import Celery

from reportcycles.settings import Settings


def celery_config(settings: Settings) -> dict:
    return {
        "broker_url": settings.broker_url,
        "task_serializer": "json",
        "accept_content": ["json"],
        "enable_utc": True,
        "timezone": "UTC",
        "task_ignore_result": True,
        # A task is acknowledged only when done; a worker killed mid-task leaves it for redelivery.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        # No task waits weeks in Redis: reminders live in the ledger, not as ETA tasks.
        "broker_transport_options": {"visibility_timeout": 3600},
        "worker_hijack_root_logger": False,
    }


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or Settings.from_env()
    app = Celery("reportcycles", include=["tasks.sending"])
    app.conf.update(celery_config(settings))
    return app


celery_app = make_celery()
