"""Coordinators' pages of one cycle's partners: the table, a partner's page, an uploaded file and
a mail as it was sent. Read only: the actions on these pages post to ``web/actions.py``."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, request, send_file

from web import services_of
from web.auth import login_required
from workflow.models import utcnow
from workflow.partner_page import attachment_file, mail_copy, partner_page
from workflow.partner_table import TableQuery, partner_table

bp = Blueprint("submissions", __name__)


@bp.get("/cycles/<int:cycle_id>/partners")
@login_required
def table(cycle_id):
    query = TableQuery.from_args(request.args)
    with services_of(current_app).database.unit_of_work() as uow:
        page = partner_table(uow, cycle_id, query, now=utcnow())
    if page is None:
        abort(404)
    return render_template("submissions.html", table=page, cycle_id=cycle_id)


@bp.get("/submissions/<int:submission_id>")
@login_required
def page(submission_id):
    from flask_babel import get_locale
    with services_of(current_app).database.unit_of_work() as uow:
        sub = partner_page(uow, submission_id, language=str(get_locale() or "de"), now=utcnow())
    if sub is None:
        abort(404)
    return render_template("submission.html", sub=sub)


@bp.get("/attachments/<int:attachment_id>")
@login_required
def attachment(attachment_id):
    services = services_of(current_app)
    with services.database.unit_of_work() as uow:
        found = attachment_file(uow, attachment_id)
    if found is None:
        abort(404)
    path = services.settings.uploads_dir / found.storage_key
    if not path.is_file():
        abort(404)
    response = send_file(path, mimetype=found.content_type, as_attachment=True,
                         download_name=found.filename, conditional=False, etag=False)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/mails/<int:notification_id>")
@login_required
def mail(notification_id):
    with services_of(current_app).database.unit_of_work() as uow:
        copy = mail_copy(uow, notification_id)
    if copy is None:
        abort(404)
    return render_template("mail_copy.html", mail=copy)
