"""The composition root: settings in; database, mail service, dispatcher and Celery app out."""
from __future__ import annotations

import logging
from datetime import datetime
from urllib.parse import urlsplit

from celery import Celery

from infra.logs import configure_logging, install_redaction
from infra.mail import EmailRenderer, transport_for
from infra.services import Services
from infra.settings import Settings
from infra.throttle import throttle_for
from tasks.celery_app import celery_config
from tasks.dispatch import CeleryDispatcher
from tasks.sending import register_tasks
from workflow.bounces import return_path_for
from workflow.composition import Letterhead
from workflow.delivery import MailService, deliver
from workflow.uow import Database, NoDispatch

log = logging.getLogger(__name__)


class DeliverInProcess:
    """After commit, send right here in this process (CLI rehearsals without a worker)."""

    def __init__(self, mail: MailService, batch_size: int):
        self.mail = mail
        self.batch_size = batch_size

    def send_notifications(self, ids, as_of: datetime | None = None):
        """In batches as a worker takes them (a batch holds a lock per mail)."""
        ids = list(ids)
        for start in range(0, len(ids), self.batch_size):
            deliver(self.mail, ids[start:start + self.batch_size], as_of)

    def backlog(self) -> int:
        return 0  # nothing waits anywhere: each hand-over is sent before the call returns


def build(settings: Settings | None = None, dispatch: str = "celery",
          celery: Celery | None = None) -> Services:
    """Wire the application. ``dispatch``: "celery", "inline" (send in this process) or "none"."""
    install_redaction()  # whatever the entry point, no personal link reaches a log
    settings = settings or Settings.from_env()
    database = Database(settings.database_url)
    letterhead = Letterhead(
        render=EmailRenderer(timezone=settings.timezone), base_url=settings.base_url,
        mail_from=settings.mail_from, coordinator_emails=settings.coordinator_emails,
        message_id_domain=urlsplit(settings.base_url).hostname or "reportcycles.invalid",
        return_path=return_path_for(settings.bounce_address, settings.secret_key))
    mail = MailService(database=database, transport=transport_for(settings.smtp),
                       letterhead=letterhead, lease_seconds=settings.send_lease_seconds,
                       max_attempts=settings.max_send_attempts,
                       throttle=throttle_for(settings))
    if dispatch == "celery":
        database.dispatcher = CeleryDispatcher(celery or make_celery(settings),
                                               settings.send_batch_size)
    elif dispatch == "inline":
        database.dispatcher = DeliverInProcess(mail, settings.send_batch_size)
    else:
        database.dispatcher = NoDispatch()
    return Services(settings, database, mail)


def warn_when_no_mail_leaves(settings: Settings):
    """Processes that only queue mail start without SMTP settings, but say so loudly."""
    if settings.smtp is None:
        log.warning("SMTP_URL is not set: mail is queued but no worker can send it until "
                    "SMTP_URL (or SMTP_HOST …) is set.")
    elif settings.maildir is not None:
        log.warning("SMTP_URL is not set: mail is written to %s and does not leave this machine.",
                    settings.maildir)


def make_celery(settings: Settings) -> Celery:
    """The one Celery app: its workers build their services lazily, once per process."""
    app = Celery("reportcycles", set_as_current=True)
    app.conf.update(celery_config(settings))
    register_tasks(app)
    app.build_services = lambda: build(settings, "celery", celery=app)
    return app


def celery_from_env() -> Celery:
    """For `celery -A reportcycles.worker`: settings and logging from the environment."""
    configure_logging()
    return make_celery(Settings.from_env())
