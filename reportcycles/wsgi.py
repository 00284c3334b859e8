"""Entry point for WSGI servers: `gunicorn "reportcycles.wsgi:create_app()"`."""
from __future__ import annotations

from flask import Flask

from infra.logs import configure_logging
from infra.settings import Settings


def create_app() -> Flask:
    from reportcycles.bootstrap import build, warn_when_no_mail_leaves
    from web import create_app as create_web_app

    configure_logging()
    settings = Settings.from_env()
    warn_when_no_mail_leaves(settings)
    services = build(settings, "inline" if settings.embedded else "celery")
    return create_web_app(settings=settings, services=services)
