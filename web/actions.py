"""The coordinators' actions: each view parses the form, calls one use case in one transaction
and answers 303 to a page that shows the result. Destructive actions (exempt, escalate now,
pausing a whole cycle, removing a contact, bulk) first show a confirmation page of their own."""
from __future__ import annotations

from collections.abc import Callable

from flask import (Blueprint, abort, current_app, flash, redirect, render_template, request,
                   url_for)
from flask_babel import get_locale, gettext, lazy_gettext, ngettext
from flask_babel import gettext as _
from flask_login import current_user

from web import local_path, parse_id, services_of
from web.auth import login_required
from workflow.coordination import (BULK_ACTIONS, MAX_BULK, ROLES, ContactProblems, add_contact,
                                   bulk, change_contact, contact_input, current_submission_of,
                                   cycle_facts,
                                   escalate_now, exempt, extension_facts, partner_contacts,
                                   pause_cycle, pause_reminders, remove_contact, resend_link,
                                   resume_cycle, resume_reminders,
                                   review_questions, selection, submission_facts, unexempt)
from workflow.cycles import get_programme
from workflow.errors import DomainError, IllegalTransition, InvalidInput, NotFound
from workflow.models import utcnow
from workflow.programmes import coordinators_of, set_coordinators
from workflow.requests import decide_extension
from workflow.review import accept_report, return_report
from workflow.states import awaits_report

bp = Blueprint("actions", __name__)
bp.add_app_template_global(awaits_report)  # which actions a state allows: the partials ask

# The domain's refusals, so that the catalogue carries their English (gettext finds them by text).
DOMAIN_MESSAGES = (
    lazy_gettext("Bitte nennen Sie den Grund der Befreiung."),
    lazy_gettext("Der Grund ist zu lang (höchstens 2000 Zeichen)."),
    lazy_gettext("Dieser Partner ist bereits befreit."),
    lazy_gettext("Der Bericht ist bereits eingereicht; eine Befreiung ist nicht mehr möglich."),
    lazy_gettext("Dieser Partner ist nicht befreit."),
    lazy_gettext("Dieser Partner ist befreit; er braucht keinen Link."),
    lazy_gettext("Der Bericht ist nicht mehr offen; es gibt nichts zu eskalieren."),
    lazy_gettext("Die Erinnerungen sind pausiert; bitte zuerst fortsetzen."),
    lazy_gettext("Keine weitere Stufe geplant: es gibt nichts mehr zu eskalieren."),
    lazy_gettext("Die Erinnerungen sind bereits pausiert."),
    lazy_gettext("Der Bericht ist nicht mehr offen; es gibt keine Erinnerungen zu pausieren."),
    lazy_gettext("Die Erinnerungen sind nicht pausiert."),
    lazy_gettext("Die Erinnerungen dieses Zyklus sind bereits pausiert."),
    lazy_gettext("Die Erinnerungen dieses Zyklus sind nicht pausiert."),
    lazy_gettext("Unbekannte Aktion."),
    lazy_gettext("Bitte wählen Sie mindestens einen Partner aus."),
    lazy_gettext("Bitte wählen Sie eine Rolle."),
    lazy_gettext("Bitte geben Sie eine E-Mail-Adresse an."),
    lazy_gettext("Diese E-Mail-Adresse ist ungültig."),
    lazy_gettext("Der Name ist zu lang (höchstens 300 Zeichen)."),
    lazy_gettext("Bitte wählen Sie Deutsch oder Englisch."),
    lazy_gettext("Diese Adresse ist in dieser Rolle schon eingetragen."),
    lazy_gettext("Der letzte Kontakt eines Partners kann nicht entfernt werden; ändern Sie ihn "
                 "stattdessen."),
    lazy_gettext("Bitte geben Sie mindestens einen Kommentar an."),
    lazy_gettext("Mindestens eine Adresse der Koordination angeben."),
)


def said(error: Exception) -> str:
    """A domain refusal in the page's language (as it is when the catalogue does not know it)."""
    if isinstance(error, IllegalTransition):  # most often a page older than the report's state
        return _("Das ist im jetzigen Zustand des Berichts nicht möglich. Bitte laden Sie die "
                 "Seite neu.")
    text = error.args[0] if error.args else str(error)
    return gettext(text) if isinstance(text, str) else str(error)


def _services():
    return services_of(current_app)


def _run(use_case: Callable, *args, **kwargs):
    """One use case in one transaction, as the signed-in coordinator."""
    with _services().database.unit_of_work() as uow:
        result = use_case(uow, *args, now=utcnow(), actor=current_user.email, **kwargs)
        uow.commit()
    return result


def _read(query: Callable, *args, **kwargs):
    """A read for a page; an unknown id is a 404 page."""
    try:
        with _services().database.unit_of_work() as uow:
            return query(uow, *args, **kwargs)
    except NotFound:
        abort(404)


def submission_page(submission_id: int) -> str:
    return url_for("submissions.page", submission_id=submission_id)


def cycle_page(cycle_id: int) -> str:
    return url_for("overview.cycle", cycle_id=cycle_id)


def _acted(use_case: Callable, target_id: int, success: str, back: str, **kwargs):
    """Run an action: done or refused, the page it goes back to says which."""
    try:
        _run(use_case, target_id, **kwargs)
    except NotFound:
        abort(404)
    except DomainError as refusal:
        flash(said(refusal), "error")
    else:
        flash(success, "success")
    return redirect(back, 303)


def _one_click(submission_id: int, use_case: Callable, success: str, **kwargs):
    """A one-click action on a submission; the partner page says how it went."""
    return _acted(use_case, submission_id, success, submission_page(submission_id), **kwargs)


# Accept and return -------------------------------------------------------------------------------

@bp.post("/submissions/<int:submission_id>/accept")
@login_required
def accept(submission_id):
    return _one_click(submission_id, accept_report, _("Der Bericht ist angenommen."))


@bp.route("/submissions/<int:submission_id>/return", methods=["GET", "POST"], endpoint="return")
@login_required
def return_(submission_id):
    language = str(get_locale() or "de")
    facts = _read(submission_facts, submission_id)
    sections = _read(review_questions, submission_id, language)
    if request.method == "GET":
        return _return_page(facts, sections, {}, error=None)
    comments = {"_general": request.form.get("comment__general", "")}
    comments.update({q["id"]: request.form.get(f"comment_{q['id']}", "")
                     for section in sections for q in section["questions"]})
    comments = {k: v[:4000] for k, v in comments.items() if v.strip()}
    try:
        _run(return_report, submission_id, comments=comments)
    except InvalidInput as refusal:
        return _return_page(facts, sections, comments, error=said(refusal)), 422
    except DomainError as refusal:
        flash(said(refusal), "error")
        return redirect(submission_page(submission_id), 303)
    flash(_("Der Bericht ist zur Überarbeitung zurückgegeben; der Partner wird "
            "benachrichtigt."), "success")
    return redirect(submission_page(submission_id), 303)


def _return_page(facts, sections, comments, *, error):
    return render_template("action_return.html", sub=facts, sections=sections,
                           comments=comments, error=error,
                           back=submission_page(facts.id))


# Exempt and undo ---------------------------------------------------------------------------------

@bp.route("/submissions/<int:submission_id>/exempt", methods=["GET", "POST"],
          endpoint="exempt")
@login_required
def exempt_(submission_id):
    facts = _read(submission_facts, submission_id)
    if request.method == "GET":
        return _exempt_page(facts, reason="", error=None)
    reason = request.form.get("reason", "")
    try:
        _run(exempt, submission_id, reason=reason)
    except InvalidInput as refusal:
        return _exempt_page(facts, reason=reason, error=said(refusal)), 422
    except DomainError as refusal:
        flash(said(refusal), "error")
        return redirect(submission_page(submission_id), 303)
    flash(_("Der Partner ist für dieses Jahr befreit; offene Erinnerungen sind storniert."),
          "success")
    return redirect(submission_page(submission_id), 303)


def _exempt_page(facts, *, reason, error):
    return render_template("action_exempt.html", sub=facts, reason=reason, error=error,
                           back=submission_page(facts.id))


@bp.post("/submissions/<int:submission_id>/unexempt", endpoint="unexempt")
@login_required
def unexempt_(submission_id):
    return _one_click(submission_id, unexempt,
                      _("Die Befreiung ist aufgehoben; die Erinnerungen sind ab heute neu "
                        "geplant."))


# Resend the link, escalate now -------------------------------------------------------------------

@bp.post("/submissions/<int:submission_id>/resend-link", endpoint="resend_link")
@login_required
def resend_link_(submission_id):
    return _one_click(submission_id, resend_link,
                      _("Ein neuer persönlicher Link ist unterwegs; ältere Links gelten "
                        "weiterhin."))


@bp.route("/submissions/<int:submission_id>/escalate", methods=["GET", "POST"])
@login_required
def escalate(submission_id):
    if request.method == "GET":
        facts = _read(submission_facts, submission_id, with_next_rung=True)
        return render_template("action_escalate.html", sub=facts,
                               back=submission_page(facts.id))
    return _one_click(submission_id, escalate_now,
                      _("Die nächste Stufe ist ausgelöst und wird im nächsten Sendefenster "
                        "verschickt."))


# Pause and resume --------------------------------------------------------------------------------

@bp.post("/submissions/<int:submission_id>/pause")
@login_required
def pause(submission_id):
    return _one_click(submission_id, pause_reminders,
                      _("Die Erinnerungen an diesen Partner sind pausiert."))


@bp.post("/submissions/<int:submission_id>/resume")
@login_required
def resume(submission_id):
    return _one_click(submission_id, resume_reminders,
                      _("Die Erinnerungen an diesen Partner laufen wieder."))


@bp.route("/cycles/<int:cycle_id>/pause", methods=["GET", "POST"], endpoint="pause_cycle")
@login_required
def pause_whole_cycle(cycle_id):
    cycle = _read(cycle_facts, cycle_id)
    if request.method == "GET":
        return render_template("action_pause_cycle.html", cycle=cycle, back=cycle_page(cycle_id))
    return _cycle_action(cycle_id, pause_cycle,
                         _("Alle Erinnerungen dieses Zyklus sind pausiert."))


@bp.post("/cycles/<int:cycle_id>/resume", endpoint="resume_cycle")
@login_required
def resume_whole_cycle(cycle_id):
    return _cycle_action(cycle_id, resume_cycle,
                         _("Die Erinnerungen dieses Zyklus laufen wieder; Fälliges wird "
                           "nachgeholt."))


def _cycle_action(cycle_id: int, use_case: Callable, success: str):
    """An action on the whole cycle; its overview says how it went."""
    return _acted(use_case, cycle_id, success, cycle_page(cycle_id))


# Extension requests ------------------------------------------------------------------------------

@bp.route("/extensions/<int:request_id>", methods=["GET", "POST"])
@login_required
def extension(request_id):
    facts = _read(extension_facts, request_id)
    if request.method == "GET":
        return render_template("action_extension.html", req=facts,
                               back=submission_page(facts.submission_id))
    decision = request.form.get("decision")
    if decision not in ("grant", "refuse"):
        flash(_("Bitte wählen Sie „Gewähren“ oder „Ablehnen“."), "error")
        return redirect(url_for("actions.extension", request_id=request_id), 303)
    if not facts.pending:
        flash(_("Über diesen Antrag wurde schon entschieden; die Entscheidung bleibt."), "error")
        return redirect(url_for("actions.extension", request_id=request_id), 303)
    try:
        _run(decide_extension, request_id, grant=decision == "grant",
             comment=request.form.get("comment", "").strip()[:2000])
    except DomainError as refusal:
        flash(said(refusal), "error")
    else:
        flash(_("Die Verlängerung ist gewährt; der Partner wird benachrichtigt.")
              if decision == "grant" else
              _("Der Antrag ist abgelehnt; der Partner wird benachrichtigt."), "success")
    return redirect(url_for("actions.extension", request_id=request_id), 303)


# Bulk actions ------------------------------------------------------------------------------------

BULK_NAMES = {
    "pause": lazy_gettext("Erinnerungen pausieren"),
    "resume": lazy_gettext("Erinnerungen fortsetzen"),
    "resend_link": lazy_gettext("Link erneut senden"),
    "escalate": lazy_gettext("Jetzt eskalieren"),
}


def _selected_ids(values) -> list[int]:
    return [i for i in map(parse_id, values) if i is not None]


@bp.route("/cycles/<int:cycle_id>/bulk", methods=["GET", "POST"], endpoint="bulk")
@login_required
def bulk_(cycle_id):
    """POST from the table: 303 to the confirmation page (GET; shown at once for a selection
    too long for a URL); POST with confirm: done, 303 to ``next``."""
    source = request.form if request.method == "POST" else request.args
    action = source.get("action", "")
    ids = _selected_ids(source.getlist("submission_id"))
    back = local_path(source.get("next") or _table_page(cycle_id))
    _read(cycle_facts, cycle_id)
    if request.method == "GET":
        return _bulk_page(cycle_id, action, ids, back)
    if action not in BULK_ACTIONS:
        flash(_("Bitte wählen Sie eine Aktion."), "error")
        return redirect(back, 303)
    if not ids:
        flash(_("Bitte wählen Sie mindestens einen Partner aus."), "error")
        return redirect(back, 303)
    if source.get("confirm") == "1":
        try:
            result = _run(bulk, cycle_id, ids, action)
        except DomainError as refusal:
            flash(said(refusal), "error")
            return redirect(back, 303)
        flash(ngettext("%(name)s: bei %(num)d Partner erledigt.",
                       "%(name)s: bei %(num)d Partnern erledigt.", result.done,
                       name=BULK_NAMES[action]), "success")
        if result.refused:
            flash(ngettext("%(num)d Partner ausgelassen: %(names)s",
                           "%(num)d Partner ausgelassen: %(names)s", len(result.refused),
                           names="; ".join(f"{name} ({gettext(why)})"
                                           for name, why in result.refused[:20])), "error")
        return redirect(back, 303)
    if len(ids) > SELECTION_IN_URL:  # too long for one request line (proxies cut at 4 KB)
        return _bulk_page(cycle_id, action, ids, back)
    return redirect(url_for("actions.bulk", cycle_id=cycle_id, action=action,
                            submission_id=ids, next=back), 303)


SELECTION_IN_URL = 100


def _bulk_page(cycle_id: int, action: str, ids: list[int], back: str):
    chosen = _read(selection, cycle_id, ids) if action in BULK_ACTIONS else []
    return render_template("action_bulk.html", cycle_id=cycle_id, action=action,
                           action_name=BULK_NAMES.get(action, _("Aktion")), chosen=chosen,
                           back=back, cut=len(set(ids)) > MAX_BULK)


def _table_page(cycle_id: int) -> str:
    return url_for("submissions.table", cycle_id=cycle_id)


# Contacts ----------------------------------------------------------------------------------------

ROLE_NAMES = {"reporting": lazy_gettext("Berichtskontakt"), "deputy": lazy_gettext("Vertretung"),
              "head": lazy_gettext("Leitung")}


@bp.route("/partners/<int:partner_id>/contacts", methods=["GET", "POST"])
@login_required
def contacts(partner_id):
    if request.method == "GET":
        editing = request.args.get("edit", "")
        return _contacts_page(partner_id, editing=parse_id(editing))
    form = request.form
    data = contact_input(form.get("role", ""), form.get("name", ""), form.get("email", ""),
                         form.get("language", "de"))
    contact_id = form.get("contact_id", "")
    if contact_id and parse_id(contact_id) is None:
        abort(404)  # no such contact
    try:
        if contact_id:
            _run(change_contact, partner_id, parse_id(contact_id), data)
            flash(_("Der Kontakt ist geändert."), "success")
        else:
            _run(add_contact, partner_id, data)
            flash(_("Der Kontakt ist hinzugefügt."), "success")
    except NotFound:
        abort(404)
    except ContactProblems as problems:
        editing = parse_id(contact_id)
        errors = {field: gettext(message) for field, message in problems.fields.items()}
        return _contacts_page(partner_id, editing=editing, form=form, errors=errors), 422
    return redirect(url_for("actions.contacts", partner_id=partner_id), 303)


def _contacts_page(partner_id: int, *, editing: int | None = None, form=None, errors=None):
    def load(uow):
        name, rows = partner_contacts(uow, partner_id)
        return name, rows, current_submission_of(uow, partner_id)
    name, rows, submission_id = _read(load)
    prefix = f"c{editing}-" if editing else "new-"
    error_list = [(prefix + field, message) for field, message in (errors or {}).items()]
    return render_template("action_contacts.html", partner_id=partner_id, partner_name=name,
                           contacts=rows, roles=[r.value for r in ROLES], role_names=ROLE_NAMES,
                           editing=editing, form=form or {}, errors=errors or {},
                           error_list=error_list,
                           back=submission_page(submission_id) if submission_id else None)


@bp.route("/partners/<int:partner_id>/contacts/<int:contact_id>/remove",
          methods=["GET", "POST"], endpoint="remove_contact")
@login_required
def remove_contact_(partner_id, contact_id):
    name, rows = _read(partner_contacts, partner_id)
    contact = next((c for c in rows if c.id == contact_id), None)
    if contact is None:
        abort(404)
    if request.method == "GET":
        return render_template("action_remove_contact.html", partner_id=partner_id,
                               partner_name=name, contact=contact, role_names=ROLE_NAMES)
    try:
        _run(remove_contact, partner_id, contact_id)
    except NotFound:
        abort(404)
    except DomainError as refusal:
        flash(said(refusal), "error")
    else:
        flash(_("Der Kontakt ist entfernt."), "success")
    return redirect(url_for("actions.contacts", partner_id=partner_id), 303)


# The programme's coordinators --------------------------------------------------------------------

@bp.route("/coordinators", methods=["GET", "POST"])
@login_required
def coordinators():
    fallback = _services().settings.coordinator_emails
    current = _read(lambda uow: coordinators_of(uow, get_programme(uow), fallback))
    if request.method == "GET":
        return render_template("action_coordinators.html", current=current,
                               emails="\n".join(current.emails), error=None)
    emails = request.form.get("emails", "")[:20000]
    try:
        _run(lambda uow, **kw: set_coordinators(uow, get_programme(uow),
                                                emails.replace(",", "\n").splitlines(), **kw))
    except InvalidInput as refusal:
        message = said(refusal)
        if message.startswith("Ungültige E-Mail-Adresse"):
            message = _("Ungültige E-Mail-Adresse: %(addresses)s",
                        addresses=message.partition(": ")[2])
        return render_template("action_coordinators.html", current=current, emails=emails,
                               error=message), 422
    flash(_("Die Adressen der Koordination sind gespeichert."), "success")
    return redirect(url_for("actions.coordinators"), 303)
