"""Coordinators' set-up pages: cycles before they open (dates, ladder, a preview of every mail,
test mails to oneself), the partner list and its CSV import, report form versions."""
from __future__ import annotations

import json
import logging
from datetime import date
from email.utils import make_msgid
from urllib.parse import urlsplit

from flask import (Blueprint, abort, current_app, flash, redirect, render_template, request,
                   url_for)
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user

from web import services_of
from web.auth import login_required
from workflow.cycle_setup import (MAX_LADDER_DAYS, MAX_STEP_ROWS, OVERDUE_MAILS, FormProblems,
                                  PERSONAL_LINK_PLACEHOLDER, as_test_mail, change_ladder,
                                  change_planned_cycle, cycle_ladder, get_cycle, ladder_of,
                                  ladder_step_rows, load_template_version, parse_ladder,
                                  plan_cycle,
                                  preview_cycle_mails, preview_partners, setup_cycles,
                                  template_versions)
from workflow.cycles import get_programme, policy_of
from workflow.delivery import PermanentMailError, ServerUnavailable, TransientMailError
from workflow.errors import InvalidInput, NotFound
from workflow.models import CycleState, PartnerKind, Programme, utcnow
from workflow.partner_admin import (MAX_CSV_BYTES, SHOWN, change_partner, create_partner,
                                    group_choices, import_partner_csv, parse_partner_form,
                                    partner_detail, partner_page, preview_import,
                                    set_partner_active)
from workflow.partners import decode_partner_csv, ensure_programme
from workflow.policy import END_OF_DAY, Audience, month_day
from workflow.report_form import parse_date

log = logging.getLogger(__name__)
bp = Blueprint("setup", __name__, url_prefix="/setup")

MAX_TEMPLATE_BYTES = 1024 * 1024
EXTRA_STEP_ROWS = 2  # empty rows on the ladder form for new overdue steps


def _problem_text(code: str, params: dict) -> str:
    """A refused input in the page's language (codes from workflow.cycle_setup/partner_admin)."""
    texts = {
        "year_range": lambda: _("Bitte ein Berichtsjahr zwischen %(first)d und %(last)d angeben.",
                                **params),
        "year": lambda: _("Bitte eine Jahreszahl angeben, z. B. 2028."),
        "year_taken": lambda: _("Für %(year)d gibt es schon einen Berichtszyklus.", **params),
        "date_far_from_year": lambda: _(
            "Das Datum muss im Berichtsjahr %(year)d, im Jahr davor oder im Jahr danach liegen.",
            **params),
        "opens_in_past": lambda: _("Die Öffnung darf nicht in der Vergangenheit liegen."),
        "due_not_after_opening": lambda: _("Die Frist muss nach der Öffnung liegen."),
        "not_planned": lambda: _("Der Berichtszyklus %(year)d ist schon geöffnet; seine Daten "
                                 "lassen sich hier nicht mehr ändern.", **params),
        "days_list": lambda: _("Bitte ganze Arbeitstage zwischen 1 und %(most)d angeben, durch "
                               "Kommas getrennt, z. B. 28, 14, 7, 2.", **params),
        "days_one": lambda: _("Bitte eine ganze Zahl von Arbeitstagen zwischen 1 und %(most)d "
                              "angeben.", **params),
        "days_twice": lambda: _("Jede Zahl von Arbeitstagen darf nur einmal vorkommen."),
        "choose": lambda: _("Bitte eine der angebotenen Möglichkeiten wählen."),
        "clock": lambda: _("Bitte eine Uhrzeit wie 08:00 angeben (das Ende auch 24:00)."),
        "window_order": lambda: _("Das Versandfenster muss nach seinem Beginn enden."),
        "required": lambda: _("Bitte den Namen angeben."),
        "too_long": lambda: _("Der Name darf höchstens %(most)d Zeichen lang sein.", **params),
        "count": lambda: _("Bitte eine ganze Zahl zwischen 0 und %(most)d angeben.", **params),
        "date": lambda: _("Bitte ein Datum wie 31.03.2027 oder 2027-03-31 angeben."),
        "date_missing": lambda: _("Bitte ein Datum angeben, z. B. 31.03.2027."),
        "name_taken": lambda: _("Einen Partner mit diesem Namen gibt es schon."),
        "own_group": lambda: _("Ein Partner kann nicht seine eigene Gruppe sein."),
        "group_rule": lambda: _("Diese Gruppe ist nicht möglich: %(detail)s", **params),
    }
    return texts[code]() if code in texts else code


def _errors(fields: dict[str, tuple[str, dict]]) -> dict[str, str]:
    return {field: _problem_text(code, params) for field, (code, params) in fields.items()}


def _error_list(errors: dict[str, str], order: list[str]) -> list[tuple[str, str]]:
    """The error summary's entries in the order of the form's fields."""
    return [(field, errors[field]) for field in order if field in errors] + \
        [(field, message) for field, message in errors.items() if field not in order]


def _database():
    return services_of(current_app).database


def _language() -> str:
    """The page's language, in which the domain words what it refuses."""
    return str(get_locale() or "de")


def _programme_or_none(uow) -> Programme | None:
    try:
        return get_programme(uow)
    except NotFound:
        return None


def _search_text() -> str:
    """The search box's text: no NUL (no database stores it), 200 characters at most."""
    return request.args.get("q", "").replace("\x00", "")[:200]


def _actor() -> str:
    return current_user.email


@bp.errorhandler(413)
def too_large(error):
    return render_template("error.html", title=_("Datei zu groß"), message=_(
        "Die hochgeladene Datei ist zu groß (höchstens 12 MB auf einmal). Bitte eine kleinere "
        "Datei wählen.")), 413


def send_window(step) -> str:
    """When a ladder step's mail leaves: its day and the send window, in the page's language."""
    from infra.mail import format_date
    day = format_date(step.send_at.date(), _language())
    if step.audience == Audience.COORDINATORS:  # not bound to the window (as window_bound says)
        return _("%(day)s, ab %(start)s Uhr", day=day, start=step.send_at.strftime("%H:%M"))
    end = "24:00" if step.window_end == END_OF_DAY else step.window_end.strftime("%H:%M")
    return _("%(day)s, %(start)s–%(end)s Uhr", day=day, start=step.send_at.strftime("%H:%M"),
             end=end)


@bp.context_processor
def setup_helpers():
    return {"has_endpoint": lambda name: name in current_app.view_functions,
            "send_window": send_window}


# Cycles -----------------------------------------------------------------------------------------

@bp.get("/cycles")
@login_required
def cycles():
    with _database().unit_of_work() as uow:
        programme = _programme_or_none(uow)
        rows = setup_cycles(uow, programme.id) if programme else []
    return render_template("setup_cycles.html", rows=rows, programme=programme)


def _parse_day(form, field: str, errors: dict):
    raw = form.get(field, "").strip()
    if not raw:
        errors[field] = _problem_text("date_missing", {})
        return None
    try:
        day = parse_date(raw)
    except ValueError:
        day = None
    if day is None or not 1900 <= day.year <= 2200:
        errors[field] = _problem_text("date", {})
        return None
    return day


@bp.route("/cycles/new", methods=["GET", "POST"])
@login_required
def new_cycle():
    database = _database()
    if request.method == "GET":
        with database.unit_of_work() as uow:
            programme = _programme_or_none(uow)
            form = _suggested_cycle(uow, programme)
        return render_template("setup_cycle_new.html", form=form, errors={}, error_list=[],
                               programme=programme)
    form = request.form
    errors = {}
    year = None
    raw_year = form.get("year", "").strip()
    if raw_year.isascii() and raw_year.isdigit() and len(raw_year) == 4:
        year = int(raw_year)
    else:
        errors["year"] = _problem_text("year", {})
    opens_on, due_on = _parse_day(form, "opens_on", errors), _parse_day(form, "due_on", errors)
    cycle_id = None
    with database.unit_of_work() as uow:
        programme = _programme_or_none(uow)
        if programme is None:
            abort(404)
        if not errors:
            try:
                cycle_id = plan_cycle(uow, programme, year, opens_on, due_on, now=utcnow(),
                                      actor=_actor()).id
            except FormProblems as refused:
                errors = _errors(refused.fields)
            else:
                uow.commit()
    if errors:
        return render_template("setup_cycle_new.html", form=form, errors=errors,
                               error_list=_error_list(errors, ["year", "opens_on", "due_on"]),
                               programme=programme), 422
    flash(_("Der Berichtszyklus %(year)d ist geplant. Er öffnet sich am %(day)s von selbst.",
            year=year, day=_day(opens_on)), "success")
    return redirect(url_for(".cycle", cycle_id=cycle_id), 303)


def _day(day: date) -> str:
    from infra.mail import format_date
    return format_date(day, _language())


def _suggested_cycle(uow, programme: Programme | None) -> dict:
    """The first year from now on without a cycle, with the policy's opening and deadline."""
    if programme is None:
        return {}
    policy = policy_of(programme)
    today = utcnow().astimezone(policy.zone).date()
    taken = {row.year for row in setup_cycles(uow, programme.id)}
    year = next((y for y in range(today.year, today.year + 50) if y not in taken
                 and month_day(policy.cycle_opens, y) >= today), None)
    if year is None:
        return {}
    opens_on, due_on = month_day(policy.cycle_opens, year), month_day(policy.cycle_due, year)
    return {"year": str(year), "opens_on": _day(opens_on), "due_on": _day(due_on)}


def _cycle_page(uow, cycle_id: int, *, form=None, errors=None, status=200):
    try:
        cycle = get_cycle(uow, cycle_id)
    except NotFound:
        abort(404)
    policy = policy_of(cycle.programme)
    errors = errors or {}
    ladder = cycle_ladder(policy, cycle.opens_on, cycle.due_on) \
        if cycle.state == CycleState.PLANNED else []
    return render_template(
        "setup_cycle.html", cycle=cycle, ladder=ladder, policy=policy,
        form=form or {"opens_on": _day(cycle.opens_on), "due_on": _day(cycle.due_on)},
        errors=errors, error_list=_error_list(errors, ["opens_on", "due_on"]),
        overview=has_overview()), status


def has_overview() -> bool:
    return "overview.cycle" in current_app.view_functions


@bp.route("/cycles/<int:cycle_id>", methods=["GET", "POST"])
@login_required
def cycle(cycle_id: int):
    database = _database()
    if request.method == "GET":
        with database.unit_of_work() as uow:
            return _cycle_page(uow, cycle_id)
    form = request.form
    errors = {}
    opens_on, due_on = _parse_day(form, "opens_on", errors), _parse_day(form, "due_on", errors)
    with database.unit_of_work() as uow:
        try:
            get_cycle(uow, cycle_id)
        except NotFound:
            abort(404)
        if not errors:
            try:
                changed = change_planned_cycle(uow, cycle_id, opens_on, due_on, now=utcnow(),
                                               actor=_actor())
            except FormProblems as refused:
                errors = _errors(refused.fields)
            else:
                uow.commit()
        if errors:
            uow.rollback()
            return _cycle_page(uow, cycle_id, form=form, errors=errors, status=422)
    flash(_("Die Daten des Berichtszyklus %(year)d sind gespeichert.", year=changed.year),
          "success")
    return redirect(url_for(".cycle", cycle_id=cycle_id), 303)


def _planned_cycle(uow, cycle_id: int):
    try:
        cycle = get_cycle(uow, cycle_id)
    except NotFound:
        abort(404)
    if cycle.state != CycleState.PLANNED:
        abort(404)
    return cycle


def _chosen_partner(uow, cycle, raw: str | None):
    """The partner asked for (by id), else the first one a new cycle would invite."""
    if raw and raw.isascii() and raw.isdigit() and len(raw) < 10:
        return int(raw)
    first = preview_partners(uow, cycle.programme_id, limit=1)
    return first[0].id if first else None


@bp.get("/cycles/<int:cycle_id>/preview")
@login_required
def preview(cycle_id: int):
    letterhead = services_of(current_app).mail.letterhead
    query = _search_text()
    with _database().unit_of_work() as uow:
        cycle = _planned_cycle(uow, cycle_id)
        partner_id = _chosen_partner(uow, cycle, request.args.get("partner"))
        choices = preview_partners(uow, cycle.programme_id, query)
        mails, partner_name = [], None
        if partner_id is not None:
            try:
                partner, mails = preview_cycle_mails(uow, letterhead, cycle, partner_id)
            except NotFound:
                abort(404)
            partner_name = partner.name
        kinds = list(dict.fromkeys(mail.kind for mail in mails if not mail.problem))
        return render_template("setup_preview.html", cycle=cycle, mails=mails, kinds=kinds,
                               choices=choices, query=query, partner_id=partner_id,
                               partner_name=partner_name, placeholder=PERSONAL_LINK_PLACEHOLDER)


@bp.post("/cycles/<int:cycle_id>/test-mail")
@login_required
def test_mail(cycle_id: int):
    """One mail of the preview, sent to the signed-in person only (no ledger row): straight
    through the SMTP transport, as the account mails go."""
    services = services_of(current_app)
    kind = request.form.get("kind", "")
    with services.database.unit_of_work() as uow:
        cycle = _planned_cycle(uow, cycle_id)
        partner_id = _chosen_partner(uow, cycle, request.form.get("partner"))
        if partner_id is None:
            abort(404)
        try:
            _partner, mails = preview_cycle_mails(uow, services.mail.letterhead, cycle,
                                                  partner_id)
        except NotFound:
            abort(404)
    chosen = next((m for m in mails if m.kind == kind and not m.problem), None)
    back = url_for(".preview", cycle_id=cycle_id, partner=partner_id)
    if chosen is None:
        flash(_("Diese Art von E-Mail verschickt der Zyklus an diesen Partner nicht."), "error")
        return redirect(back, 303)
    settings = services.settings
    mail = as_test_mail(chosen, current_user.email, sender=settings.mail_from,
                        message_id=make_msgid(domain=urlsplit(settings.base_url).hostname
                                              or "reportcycles.invalid"))
    try:
        with services.mail.transport.connect() as connection:
            connection.send(mail)
    except (ServerUnavailable, TransientMailError, PermanentMailError) as exc:
        log.warning("test mail (%s) not sent: %s", kind, exc)
        flash(_("Die Test-E-Mail konnte nicht versendet werden: Der Mailserver hat sie nicht "
                "angenommen. Bitte später noch einmal versuchen."), "error")
    else:
        flash(_("Test-E-Mail „%(subject)s“ an %(email)s geschickt.", subject=mail.subject,
                email=current_user.email), "success")
    return redirect(back, 303)


# The ladder -------------------------------------------------------------------------------------

def _ladder_form(ladder: dict) -> dict:
    form = {"reminders_before": ", ".join(str(d) for d in ladder["reminders_before"]),
            "deadline_notice": "1" if ladder["deadline_notice"] else "",
            "window_start": ladder["window_start"], "window_end": ladder["window_end"],
            "window_working_days_only": "1" if ladder["window_working_days_only"] else ""}
    for index, step in enumerate(ladder["overdue_steps"]):
        form[f"step-{index}-days"] = str(step["after_working_days"])
        form[f"step-{index}-email"] = step["email"]
        form[f"step-{index}-audience"] = step["audience"]
        form[f"step-{index}-flags"] = "1" if step["flags_non_reporting"] else ""
    return form


def _ladder_page(programme, form, *, errors=None, steps=0, status=200, policy_error=None):
    errors = errors or {}
    order = ["reminders_before"] + [f"step-{i}-{part}" for i in range(steps)
                                    for part in ("days", "email", "audience")] + \
        ["window_start", "window_end"]
    error_list = _error_list(errors, order)
    if policy_error:
        error_list.append(("ladder", policy_error))
    return render_template("setup_ladder.html", programme=programme, form=form, errors=errors,
                           error_list=error_list, steps=steps, overdue_mails=OVERDUE_MAILS,
                           audiences=[a.value for a in Audience], most=MAX_LADDER_DAYS), status


@bp.route("/ladder", methods=["GET", "POST"])
@login_required
def ladder():
    database = _database()
    with database.unit_of_work() as uow:
        programme = _programme_or_none(uow)
        if request.method == "GET":
            if programme is None:
                return _ladder_page(None, {})
            current = ladder_of(policy_of(programme))
            return _ladder_page(programme, _ladder_form(current),
                                steps=len(current["overdue_steps"]) + EXTRA_STEP_ROWS)
        if programme is None:
            abort(404)
        form = request.form
        steps = min(ladder_step_rows(form), MAX_STEP_ROWS)  # the rows the page shows again
        try:
            changed = change_ladder(uow, programme, parse_ladder(form, _language()), now=utcnow(),
                                    actor=_actor(), language=_language())
        except FormProblems as refused:
            return _ladder_page(programme, form, errors=_errors(refused.fields), steps=steps,
                                status=422)
        except InvalidInput as refused:
            return _ladder_page(programme, form, steps=steps, status=422,
                                policy_error=str(refused))
        uow.commit()
    flash(_("Die Berichtsregel ist gespeichert. Sie gilt für jeden Zyklus, der sich von jetzt an "
            "öffnet; geöffnete Zyklen behalten ihre geplanten E-Mails.") if changed else
          _("Nichts geändert."), "success")
    return redirect(url_for(".ladder"), 303)


# Partners ---------------------------------------------------------------------------------------

@bp.get("/partners")
@login_required
def partners():
    query = _search_text()
    shown = request.args.get("shown", "all")
    shown = shown if shown in SHOWN else "all"
    raw_page = request.args.get("page", "1")
    page = int(raw_page) if raw_page.isascii() and raw_page.isdigit() and len(raw_page) < 7 else 1
    with _database().unit_of_work() as uow:
        programme = _programme_or_none(uow)
        listing = partner_page(uow, programme.id, query=query, shown=shown, page=page) \
            if programme else None
    return render_template("setup_partners.html", listing=listing, query=query, shown=shown)


PARTNER_FIELDS = ["name", "kind", "employees", "joined_on", "group_id"]


def _partner_form_page(template: str, form, *, errors=None, status=200, **context):
    errors = errors or {}
    return render_template(template, form=form, errors=errors,
                           error_list=_error_list(errors, PARTNER_FIELDS),
                           kinds=[k.value for k in PartnerKind], **context), status


@bp.route("/partners/new", methods=["GET", "POST"])
@login_required
def new_partner():
    database = _database()
    with database.unit_of_work() as uow:
        programme = _programme_or_none(uow)
        groups = group_choices(uow, programme.id) if programme else []
        if request.method == "GET":
            return _partner_form_page("setup_partner_new.html", {}, groups=groups)
        errors = {}
        try:
            values = parse_partner_form(request.form)
            programme = programme or ensure_programme(
                uow, coordinator_emails=services_of(current_app).settings.coordinator_emails)
            partner = create_partner(uow, programme, values, now=utcnow(), actor=_actor(),
                                     language=_language())
        except FormProblems as refused:
            errors = _errors(refused.fields)
        if errors:
            return _partner_form_page("setup_partner_new.html", request.form, errors=errors,
                                      groups=groups, status=422)
        partner_id, name = partner.id, partner.name
        uow.commit()
    flash(_("Partner „%(name)s“ angelegt. Als Nächstes die Kontakte eintragen.", name=name),
          "success")
    return redirect(url_for(".partner", partner_id=partner_id), 303)


def _partner_values_form(detail) -> dict:
    return {"name": detail.name, "kind": detail.kind,
            "employees": "" if detail.employees is None else str(detail.employees),
            "joined_on": _day(detail.joined_on) if detail.joined_on else "",
            "group_id": str(detail.group.id) if detail.group else ""}


@bp.route("/partners/<int:partner_id>", methods=["GET", "POST"])
@login_required
def partner(partner_id: int):
    database = _database()
    action = request.form.get("action", "save") if request.method == "POST" else None
    with database.unit_of_work() as uow:
        programme = _programme_or_none(uow)
        if programme is None:
            abort(404)
        try:
            detail = partner_detail(uow, programme.id, partner_id)
        except NotFound:
            abort(404)
        groups = group_choices(uow, programme.id, partner_id)

        def page(form, **extra):
            return _partner_form_page("setup_partner.html", form, partner=detail, groups=groups,
                                      **extra)

        if request.method == "GET":
            return page(_partner_values_form(detail))
        if action in ("deactivate", "reactivate"):
            if action == "deactivate" and request.form.get("confirm") != "1":
                return page(_partner_values_form(detail), confirm_deactivate=True)
            set_partner_active(uow, programme.id, partner_id, action == "reactivate",
                               now=utcnow(), actor=_actor())
            uow.commit()
            flash(_("„%(name)s“ ist wieder aktiv und wird zu Zyklen eingeladen, die sich von jetzt "
                    "an öffnen.", name=detail.name) if action == "reactivate" else
                  _("„%(name)s“ ist deaktiviert: Zyklen, die sich von jetzt an öffnen, laden den "
                    "Partner nicht mehr ein. Ein laufender Bericht bleibt bestehen.",
                    name=detail.name), "success")
            return redirect(url_for(".partner", partner_id=partner_id), 303)
        try:
            values = parse_partner_form(request.form)
            changed = change_partner(uow, programme.id, partner_id, values, now=utcnow(),
                                     actor=_actor(), language=_language())
        except FormProblems as refused:
            uow.rollback()
            return page(request.form, errors=_errors(refused.fields), status=422)
        uow.commit()
    flash(_("Gespeichert.") if changed else _("Nichts geändert."), "success")
    return redirect(url_for(".partner", partner_id=partner_id), 303)


# The CSV import ---------------------------------------------------------------------------------

@bp.route("/partners/import", methods=["GET", "POST"])
@login_required
def import_partners_page():
    if request.method == "GET":
        return render_template("setup_import.html", preview=None, text="", error=None)
    database = _database()
    if request.form.get("action") == "import":
        text = request.form.get("text", "")
        if not text or len(text.encode("utf-8")) > MAX_CSV_BYTES:
            return _import_refused(_("Bitte die Datei noch einmal hochladen."))
        with database.unit_of_work() as uow:
            programme = _programme_or_none(uow) or ensure_programme(
                uow, coordinator_emails=services_of(current_app).settings.coordinator_emails)
            try:
                result = import_partner_csv(uow, programme, text, now=utcnow(), actor=_actor())
            except InvalidInput:
                uow.rollback()
                # Something changed since the preview: show what the import now finds.
                return _import_preview(uow, text, [], status=422)
            uow.commit()
        flash(_("Import abgeschlossen: %(created)d angelegt, %(updated)d geändert, "
                "%(unchanged)d unverändert.", created=result.created, updated=result.updated,
                unchanged=result.unchanged), "success")
        return redirect(url_for(".partners"), 303)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _import_refused(_("Bitte eine CSV-Datei auswählen."))
    data = _read_upload(upload, MAX_CSV_BYTES)
    if not data:
        return _import_refused(_("Die Datei ist leer."))
    if len(data) > MAX_CSV_BYTES:
        return _import_refused(_("Die Datei ist zu groß: höchstens %(mb)d MB.",
                                 mb=MAX_CSV_BYTES // (1024 * 1024)))
    try:
        text, notes = decode_partner_csv(data, language=_language())
    except InvalidInput as refused:
        return _import_refused(str(refused))
    with database.unit_of_work() as uow:
        return _import_preview(uow, text, notes)


def _read_upload(upload, limit: int) -> bytes:
    """At most ``limit`` + 1 bytes of an uploaded file (one more tells that it is too large)."""
    try:
        return upload.stream.read(limit + 1)
    finally:
        upload.close()


def _import_refused(message: str):
    return render_template("setup_import.html", preview=None, text="", error=message), 422


def _import_preview(uow, text: str, notes: list[str], status: int = 200):
    result = preview_import(uow, _programme_or_none(uow), text, language=_language())
    return render_template("setup_import.html", preview=result, notes=notes, error=None,
                           text=text if not result.errors else ""), \
        422 if result.errors else status


# Report form versions ---------------------------------------------------------------------------

@bp.route("/templates", methods=["GET", "POST"])
@login_required
def templates():
    database = _database()
    error, details = None, []
    if request.method == "POST":
        upload = request.files.get("file")
        data = _read_upload(upload, MAX_TEMPLATE_BYTES) if upload and upload.filename else b""
        if not data:
            error = _("Bitte eine Vorlage als JSON-Datei auswählen.")
        elif len(data) > MAX_TEMPLATE_BYTES:
            error = _("Die Datei ist zu groß: höchstens 1 MB.")
        else:
            try:
                definition = json.loads(data.decode("utf-8-sig"))
            except UnicodeDecodeError:
                error = _("Die Datei ist nicht in UTF-8 geschrieben.")
            except ValueError as exc:
                error = _("Die Datei ist kein gültiges JSON: %(reason)s", reason=str(exc))
            except RecursionError:
                error = _("Die Datei ist kein gültiges JSON: %(reason)s",
                          reason=_("zu tief verschachtelt"))
        if error is None:
            with database.unit_of_work() as uow:
                programme = _programme_or_none(uow) or ensure_programme(
                    uow, coordinator_emails=services_of(current_app).settings.coordinator_emails)
                try:
                    template, new = load_template_version(uow, programme, definition,
                                                          now=utcnow(), actor=_actor(),
                                                          language=_language())
                except InvalidInput as refused:
                    error, details = refused.args[0], refused.problems
                else:
                    year, version = template.year, template.version
                    uow.commit()
        if error is None:
            flash(_("Vorlage %(year)d, Version %(version)d geladen.", year=year, version=version)
                  if new else _("Vorlage %(year)d, Version %(version)d ist schon geladen; nichts "
                                "geändert.", year=year, version=version), "success")
            return redirect(url_for(".templates"), 303)
    with database.unit_of_work() as uow:
        programme = _programme_or_none(uow)
        rows = template_versions(uow, programme.id) if programme else []
    return render_template("setup_templates.html", rows=rows, error=error, details=details), \
        422 if error else 200
