"""The coordinators' start page and one cycle's overview (read side: workflow.cycle_overview)."""
from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

from flask import Blueprint, abort, current_app, jsonify, render_template, url_for
from flask_babel import get_locale
from markupsafe import Markup
from flask_babel import gettext as _

from infra.mail import format_datetime
from web import reading, services_of
from web.auth import login_required
from web.charts import burn_up_chart, table_days
from workflow.cycle_overview import (VersionedCache, cycle_overview, cycle_page_state,
                                     cycle_summaries, overview_version)
from workflow.models import utcnow
from workflow.policy import ReportingPolicy

bp = Blueprint("overview", __name__)
START_PAGE = "start"  # the start page's key in the figures cache


def figures_cache() -> VersionedCache:
    """This process's figures of the start page and the cycles' overviews."""
    return current_app.extensions.setdefault("figures_cache", VersionedCache(max_entries=64))


@bp.get("/")
@login_required
def index():
    services = services_of(current_app)
    now = utcnow()
    with reading() as uow:
        version = overview_version(uow, None, now)

    def summaries_now():
        with services.database.unit_of_work() as uow:  # the figures from one snapshot
            return cycle_summaries(uow, now)

    _, summaries = figures_cache().get(START_PAGE, version, summaries_now)
    return render_template("index.html", summaries=summaries, now=now)


@bp.get("/cycles/<int:cycle_id>")
@login_required
def cycle(cycle_id: int):
    services = services_of(current_app)
    now = utcnow()
    with reading() as uow:  # one query on every request
        state = cycle_page_state(uow, cycle_id, now)
    if state is None:
        abort(404)
    head, version = state

    def overview_now():
        with services.database.unit_of_work() as uow:  # the figures from one snapshot
            return cycle_overview(uow, cycle_id, now)

    def figures() -> Markup:
        # Rendered with autoescaping like any template, then kept until the version changes.
        _, overview = figures_cache().get(cycle_id, version, overview_now)
        chart = burn_up_chart(overview.burn_up, overview.last_year, overview.counts.expected)
        return Markup(render_template(
            "_cycle_figures.html", o=overview, cycle=head, chart=chart,
            chart_days=table_days(overview.burn_up, overview.last_year)))

    language = str(get_locale() or "de")
    shown, html = figures_cache().get((cycle_id, language), version, figures, stale_ok=True)
    # ``shown`` is older than ``version`` only while another request computes the new figures.
    return render_template("cycle.html", cycle=head, figures=html, now=now, version=shown)


@bp.get("/cycles/<int:cycle_id>/live")
@login_required
def live(cycle_id: int):
    """What the page polls: a version that changes when any of its figures may have changed."""
    with reading() as uow:
        version = overview_version(uow, cycle_id, utcnow())
    if version is None:
        abort(404)
    response = jsonify(version=version)
    response.headers["Cache-Control"] = "no-store"
    return response


# Helpers for the two templates ------------------------------------------------------------------

def table_url(cycle_id: int, **filters) -> str:
    """The partner table filtered (its owner's page; the path is fixed by the URL plan)."""
    query = urlencode({k: v for k, v in filters.items() if v is not None})
    if "submissions.table" in current_app.view_functions:
        base = url_for("submissions.table", cycle_id=cycle_id)
    else:
        base = f"/cycles/{cycle_id}/partners"
    return f"{base}?{query}" if query else base


def partner_url(submission_id: int) -> str:
    if "submissions.page" in current_app.view_functions:
        return url_for("submissions.page", submission_id=submission_id)
    return f"/submissions/{submission_id}"


def state_names() -> dict[str, str]:
    return {"invited": _("eingeladen"), "opened": _("geöffnet"), "draft": _("Entwurf"),
            "submitted": _("eingereicht"), "returned": _("zurückgegeben"),
            "accepted": _("angenommen"), "exempted": _("befreit")}


def rung_label(rung: str, email: str | None = None) -> str:
    """A rung of the ladder (or another mail) in words."""
    name, _sep, number = rung.partition("-")
    if name == "reminder" and number.isdigit():
        return _("Erinnerung %(days)s Arbeitstage vor der Frist", days=number)
    if name == "overdue" and number.isdigit():
        if email == "escalation_head":
            return _("An die Leitung, %(days)s Arbeitstage nach der Frist", days=number)
        if email == "non_reporting_notice":
            return _("Säumnis-Hinweis an die Koordination, %(days)s Arbeitstage nach der Frist",
                     days=number)
        return _("Mahnung %(days)s Arbeitstage nach der Frist", days=number)
    labels = {"invitation": _("Einladung"),
              "member_invitation": _("Einladung einer Mitgliedsstadt"),
              "deadline_notice": _("Hinweis an die Koordination zum Fristende"),
              "receipt": _("Eingangsbestätigung"),
              "extension_request": _("Antrag auf Fristverlängerung an die Koordination"),
              "extension_decision": _("Entscheidung über eine Fristverlängerung"),
              "intent_notice": _("Ankündigung an die Koordination"),
              "returned": _("Rückgabe zur Überarbeitung"),
              "link_resent": _("Neuer persönlicher Link"),
              "digest": _("Tägliche Übersicht an die Koordination")}
    return labels.get(rung, rung)


def when(instant) -> str:
    """An instant in the policies' zone, in the page's language."""
    if instant is None:
        return ""
    local = instant.astimezone(ReportingPolicy().zone)
    return format_datetime(local, str(get_locale() or "de"))


def percent(share: float) -> str:
    number = f"{share * 100:.0f}"
    return f"{number}%" if str(get_locale() or "de") == "en" else f"{number}\u00a0%"


def role_names() -> dict[str, str]:
    return {"reporting": _("Berichtende Person"), "deputy": _("Vertretung"),
            "head": _("Leitung")}


bp.add_app_template_global(rung_label)  # the partner page, the mail copy and the mailbox too


@bp.context_processor
def helpers():
    return {"table_url": table_url, "partner_url": partner_url, "state_names": state_names(),
            "role_names": role_names(), "when": when, "percent": percent,
            "timedelta": timedelta}
