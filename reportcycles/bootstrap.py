"""The composition root: settings in, database, mail service and dispatcher out."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from reportcycles.mail import EmailRenderer, transport_for
from reportcycles.settings import Settings
from workflow.sending import MailService, deliver
from workflow.uow import Database, NoDispatch

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    database: Database
    mail: MailService


class DeliverInProcess:
    """After commit, send right here in this process (CLI rehearsals without a worker)."""

    def __init__(self, mail: MailService):
        self.mail = mail

    def send_notifications(self, ids, as_of: datetime | None = None):
        deliver(self.mail, ids, as_of)


def build(settings: Settings | None = None, dispatch: str = "celery") -> Services:
    """Wire the application. ``dispatch``: "celery", "inline" (send in this process) or "none"."""
    settings = settings or Settings.from_env()
    database = Database(settings.database_url)
    domain = urlsplit(settings.base_url).hostname or "reportcycles.invalid"
    mail = MailService(
        database=database, transport=transport_for(settings.smtp),
        render=EmailRenderer(timezone=settings.timezone), base_url=settings.base_url,
        mail_from=settings.mail_from, coordinator_emails=settings.coordinator_emails,
        lease_seconds=settings.send_lease_seconds, max_attempts=settings.max_send_attempts,
        message_id_domain=domain)
    if dispatch == "celery":
        from tasks.celery_app import make_celery
        from tasks.dispatch import CeleryDispatcher
        database.dispatcher = CeleryDispatcher(make_celery(settings), settings.send_batch_size)
    elif dispatch == "inline":
        database.dispatcher = DeliverInProcess(mail)
    else:
        database.dispatcher = NoDispatch()
    return Services(settings, database, mail)
