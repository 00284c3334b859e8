"""`reportcycles run`: web, scheduler and a real Celery worker in one process, on SQLite.

The broker is kombu's in-memory transport, so nothing but this process is needed. Tasks lost on
exit are not lost mail: the ledger keeps them queued and the relay hands them over again.
"""
from __future__ import annotations

import logging
import threading

from werkzeug.serving import make_server

from reportcycles.bootstrap import build, make_celery
from infra.migrate import upgrade
from infra.settings import Settings

log = logging.getLogger(__name__)


def start_worker_thread(celery_app):
    worker = celery_app.WorkController(
        pool="solo", concurrency=1, loglevel="INFO", without_heartbeat=True,
        without_mingle=True, without_gossip=True, hostname="embedded@localhost")
    thread = threading.Thread(target=worker.start, name="celery-worker", daemon=True)
    thread.start()
    return worker


def demo_sign_in(services, url: str) -> str:
    """The demo coordinator (an admin, created when there is no account yet) and a fresh
    one-time link that signs them in: a newcomer reaches the dashboard in one step."""
    from workflow.models import LinkPurpose, utcnow
    from workflow.users import LINK_LIFETIME, ensure_demo_account, issue_link
    with services.database.unit_of_work() as uow:
        account, created = ensure_demo_account(
            uow, services.settings.coordinator_emails[0], now=utcnow())
        link = account and issue_link(uow, account.id, LinkPurpose.SIGN_IN, now=utcnow(),
                                      actor="run")
        uow.commit()
    if link is None:
        return (f"  Anmelden:               {url}/login\n"
                "  (neuer Link zum Passwort: reportcycles users link EMAIL)")
    note = " (neu angelegt)" if created else ""
    hours = int(LINK_LIFETIME[LinkPurpose.SIGN_IN].total_seconds() // 3600)
    return (f"  Anmelden als {account.email}{note}, Einmal-Link ({hours} Stunden):\n"
            f"    {url}{link.path}")


def run_embedded(settings: Settings, host: str = "127.0.0.1", port: int = 8000):
    if not settings.embedded:
        raise SystemExit("`reportcycles run` is the embedded mode: unset CELERY_BROKER_URL "
                         "(or use `serve`, `worker` and `scheduler` separately).")
    from tasks.scheduler import make_scheduler
    from web import create_app

    upgrade(settings.database_url)
    celery = make_celery(settings)
    services = build(settings, "celery", celery=celery)
    celery.reportcycles_services = services
    worker = start_worker_thread(celery)
    scheduler = make_scheduler(services, background=True)
    scheduler.start()
    # The local Maildir (no SMTP_URL) is shown at /mailbox; with SMTP_URL, mail leaves for real.
    local_mail = settings.maildir is not None
    app = create_app(settings=settings, services=services, show_mailbox=local_mail)
    server = make_server(host, port, app, threaded=True)
    url = f"http://{host}:{port}"
    mails = f"{url}/mailbox" if local_mail else f"über {settings.smtp.describe()}"
    print(f"\nreportcycles läuft auf {url}\n"
          f"  Zyklen und Zählungen:   {url}/\n"
          f"  Versendete Mails:       {mails}\n"
          f"  Datenbank:              {settings.database_url}\n"
          f"{demo_sign_in(services, url)}\n"
          f"Beenden mit Strg+C.\n", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        scheduler.shutdown(wait=False)
        worker.stop(in_sighandler=False)
        services.database.dispose()
