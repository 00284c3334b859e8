"""Embedded mode only: the local Maildir that stands in for an SMTP server."""
from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser

from flask import Blueprint, abort, current_app, render_template

from infra.mail import open_maildir
from web import services_of
from web.auth import login_required
from workflow.policy import ReportingPolicy

bp = Blueprint("mailbox", __name__, url_prefix="/mailbox")


def _box():
    return open_maildir(services_of(current_app).settings.maildir)


def _parse(raw_file):
    return BytesParser(policy=policy.default).parse(raw_file)


@bp.get("/")
@login_required
def index():
    box = _box()
    mails = []
    for key in box.keys():
        with box.get_file(key) as handle:
            message = _parse(handle)
        mails.append({"key": key, "subject": message["Subject"], "to": message["To"],
                      "cc": message["Cc"], "date": _sent(message),
                      "rung": message["X-Reportcycles-Rung"]})
    # Newest first; mails of the same second in the order they were written (Maildir's keys
    # begin with the time and a counter of the writing process).
    mails.sort(key=lambda m: (m["date"] or datetime.min.replace(tzinfo=UTC), m["key"]),
               reverse=True)
    return render_template("mailbox.html", mails=mails)


@bp.get("/<key>")
@login_required
def show(key):
    box = _box()
    if key not in box:
        abort(404)
    with box.get_file(key) as handle:
        message = _parse(handle)
    body = message.get_body(preferencelist=("plain",))
    return render_template("mail.html", message=message,
                           date=_sent(message),
                           rung=message["X-Reportcycles-Rung"],
                           text=body.get_content() if body else "")


def _sent(message):
    """When a mail left, in the policies' zone (the page shows it in its language)."""
    date = message["Date"]
    return date.datetime.astimezone(ReportingPolicy().zone) if date else None
