"""Coordinators' pages of one cycle's partners: the table, a partner's page, an uploaded file and
a mail as it was sent. Read only: the actions on these pages post to ``web/actions.py``."""
from __future__ import annotations

from flask import (Blueprint, abort, current_app, render_template, request, send_file,
                   url_for)
from flask_babel import get_locale
from markupsafe import Markup

from web import reading, services_of
from web.auth import login_required
from workflow.cycle_overview import VersionedCache, cycle_page_state
from workflow.models import utcnow
from workflow.partner_page import attachment_file, mail_copy, partner_page
from workflow.partner_table import TableQuery, partner_table

bp = Blueprint("submissions", __name__)
# The table page's parts kept per version; the rest is rendered on each request.
TABLE_PARTS = {"top": "_partner_table_top.html", "table": "_partner_table.html",
               "pages": "_partner_table_pages.html"}


def _table_cache() -> VersionedCache:
    """This process's pages of the partner tables (every filter, sort and page a key)."""
    return current_app.extensions.setdefault("table_cache", VersionedCache(max_entries=256))


@bp.get("/cycles/<int:cycle_id>/partners")
@login_required
def table(cycle_id):
    query = TableQuery.from_args(request.args)
    database = services_of(current_app).database
    now = utcnow()
    with reading() as uow:  # one query on every request
        state = cycle_page_state(uow, cycle_id, now)
    if state is None:
        abort(404)

    def page_now():
        with database.unit_of_work() as uow:  # the count and the rows from one snapshot
            page = partner_table(uow, cycle_id, query, now=now)
        if page is None:
            return None, {}
        # The table's own address, built once: its links differ only in their query strings.
        address = url_for("submissions.table", cycle_id=cycle_id)
        return page, {part: Markup(render_template(template, table=page, query=page.query,
                                                   table_url=address, cycle_id=cycle_id))
                      for part, template in TABLE_PARTS.items()}

    # Kept like the overview's figures: until anything the page shows may have changed. Only
    # what belongs to the request (the form's token, the actions one's role allows) is new.
    key = ("partners", cycle_id, str(get_locale() or "de"), query)
    _, (page, parts) = _table_cache().get(key, state[1], page_now)
    if page is None:
        abort(404)
    return render_template("submissions.html", table=page, parts=parts, cycle_id=cycle_id)



@bp.get("/submissions/<int:submission_id>")
@login_required
def page(submission_id):
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
