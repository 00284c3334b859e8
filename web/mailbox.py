"""Embedded mode only: the local Maildir that stands in for an SMTP server."""
from __future__ import annotations

from email import policy
from email.parser import BytesParser

from flask import Blueprint, abort, current_app, render_template

from infra.mail import open_maildir
from web import services_of
from web.auth import login_required

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
                      "cc": message["Cc"], "date": message["Date"],
                      "rung": message["X-Reportcycles-Rung"]})
    mails.sort(key=lambda m: m["date"].datetime if m["date"] else 0, reverse=True)
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
                           text=body.get_content() if body else "")
