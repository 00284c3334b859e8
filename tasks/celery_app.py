"""Celery configuration as one mapping (Flask's own example does the same); the app itself is
built by the composition root, `reportcycles.bootstrap.make_celery`."""
from __future__ import annotations

from infra.settings import Settings

# An unacknowledged task is handed out again after this long (Redis): no task may wait longer.
VISIBILITY_TIMEOUT = 3600

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
        "broker_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT},
        "worker_hijack_root_logger": False,
    }


def services_of(app):
    """The worker's application services, built once per process on first use, never at import."""
    services = getattr(app, "reportcycles_services", None)
    if services is None:
        services = app.reportcycles_services = app.build_services()
    return services
