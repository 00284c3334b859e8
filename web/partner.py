"""The partner's pages behind the personal link. Opening a page changes nothing; buttons do."""
from __future__ import annotations

from datetime import date

from flask import (Blueprint, abort, current_app, flash, g, jsonify, redirect, render_template,
                   request, send_file, session, url_for)
from flask_babel import gettext as _

from web import services_of
from workflow.cycles import policy_of
from workflow.errors import DomainError, InvalidInput, NotFound
from workflow.models import Attachment, utcnow
from workflow.partner_page import member_totals
from workflow.policy import effective_deadline
from workflow.report_form import changes, check, jumps, parse_date, read_form, text_in
from workflow.member_parts import complete_member_part, member_progress, save_member_part
from workflow.report_errors import DraftConflict, IncompleteReport, RequestProblems
from workflow.report_templates import template_of
from workflow.reporting import (add_attachment, answers_for_form, attachment_names,
                                previous_answers, save_draft, start_report, submit_report)
from workflow.requests import declare_intent, pending_extension, request_extension
from workflow.states import awaits_report
from workflow.submissions import LinkExpired, coordinators_for, open_link

bp = Blueprint("partner", __name__, url_prefix="/r")


@bp.errorhandler(429)
def too_many_failed_lookups(error):
    return render_template("error.html", title=_("Zu viele Anfragen"),
                           message=_("Bitte warten Sie eine Minute und versuchen Sie es dann "
                                     "noch einmal.")), 429, {"Retry-After": str(error.retry_after)}


def _load(uow, token, *, lead_only=False, for_update=False, with_template=False,
          with_context=True):
    """The submission behind the link; a member's link also sets ``g.part`` (its own part).
    ``for_update``: its row locked at once, for a use case that changes it. ``with_template``:
    its report template read in the same query. ``with_context``: its cycle, programme and
    partner too (a page shows them)."""
    try:
        submission, g.part, contact_language = open_link(
            uow, token, now=utcnow(), for_update=for_update, with_template=with_template,
            with_context=with_context)
    except LinkExpired as expired:
        g.coordinators = coordinators_for(uow, expired.submission_id,
                                          services_of(current_app).settings.coordinator_emails)
        abort(410)
    except NotFound:
        # Only an unknown token counts, and only it can be refused: a valid link always opens.
        wait = current_app.extensions["token_limit"].failure(request.remote_addr or "?")
        if wait is not None:
            abort(429, retry_after=wait)
        abort(404)
    if lead_only and g.part is not None:
        abort(404)
    if "lang" not in session:
        g.contact_language = contact_language or "de"
    return submission


def language() -> str:
    from flask_babel import get_locale
    return str(get_locale() or "de")


def _summary(uow, submission, *, members=False):
    """What every partner page shows; ``members``: the group members' progress too."""
    policy = policy_of(submission.cycle.programme)
    part = g.get("part")
    return {"partner": part.partner.name if part else submission.partner.name,
            "group": submission.partner.name if part else None,
            "part_done": bool(part and part.completed_at),
            "members": member_progress(uow, submission) if members and part is None else [],
            "year": submission.cycle.year,
            "programme": submission.cycle.programme.name,
            "deadline": effective_deadline(policy, submission.due_on),
            "state": str(submission.state), "open": awaits_report(submission.state),
            "submitted_at": submission.submitted_at, "paused_until": submission.paused_until,
            "comments": submission.review_comments or {}}


@bp.get("/<token>")
def show(token):
    with services_of(current_app).database.unit_of_work() as uow:
        submission = _load(uow, token)
        return render_template("partner.html", token=token,
                               **_summary(uow, submission, members=True))


@bp.post("/<token>/start")
def start(token):
    with services_of(current_app).database.unit_of_work() as uow:
        submission = _load(uow, token)
        if not awaits_report(submission.state):
            return redirect(url_for(".show", token=token), 303)
        if g.part is None:
            start_report(uow, submission.id, now=utcnow(), actor="partner")
            uow.commit()
    return redirect(url_for(".form", token=token), 303)


def _render_form(uow, submission, token, answers, *, errors=None, prefilled=False, status=200,
                 conflict=False, template=None):
    template = template or template_of(uow, submission)
    lang = language()
    errors = errors or {}
    ordered = [(q, errors[q.id]) for q in template.questions if q.id in errors]
    return render_template(
        "form.html", token=token, template=template, texts=template.texts(lang),
        answers=answers, errors=errors, error_list=ordered, lang=lang,
        t=lambda labels: text_in(labels, lang),
        version=g.part.version if g.get("part") else submission.version, prefilled=prefilled,
        conflict=conflict,
        files=_file_names(uow, submission.id, template, answers),
        **_summary(uow, submission)), status


def _file_names(uow, submission_id, template, answers) -> dict[str, str]:
    """The names of the uploaded files the answers point to (no query when none does)."""
    if not any(answers.get(q.id) for q in template.questions if q.type == "file"):
        return {}
    return attachment_names(uow, submission_id)


@bp.get("/<token>/form")
def form(token):
    with services_of(current_app).database.unit_of_work() as uow:
        submission = _load(uow, token, with_template=True)
        if not awaits_report(submission.state):
            return redirect(url_for(".show", token=token), 303)
        if g.part is not None:
            answers, prefilled, saved = g.part.answers or {}, False, g.part.answers
        else:
            (answers, prefilled), saved = answers_for_form(uow, submission), submission.answers
        template = template_of(uow, submission)
        errors = check(template, answers, complete=False, language=language()) if saved else {}
        return _render_form(uow, submission, token, answers, errors=errors, prefilled=prefilled,
                            template=template)


@bp.post("/<token>/form")
def save(token):
    services = services_of(current_app)
    action = request.form.get("action", "save")
    with services.database.unit_of_work() as uow:
        submission = _load(uow, token, for_update=True, with_template=True, with_context=False)
        if not awaits_report(submission.state):
            flash(_("Dieser Bericht ist bereits eingereicht."), "error")
            return redirect(url_for(".show", token=token), 303)
        template = template_of(uow, submission)
        part = g.part
        answers = read_form(template, request.form, (part or submission).answers)
        upload_errors = _store_uploads(uow, submission, template, answers, services)
        errors = dict(upload_errors)
        try:
            expected = int(request.form.get("version", "-1"))
        except ValueError:
            expected = -1
        try:
            if part is None:
                errors.update(save_draft(uow, submission.id, answers, expected_version=expected,
                                         now=utcnow(), actor="partner", language=language()))
            else:
                errors.update(save_member_part(uow, part.id, answers, expected_version=expected,
                                               now=utcnow(), actor="member",
                                               language=language()))
        except DraftConflict:
            uow.rollback()
            submission = _load(uow, token)
            return _render_form(uow, submission, token, answers, conflict=True, status=409)
        if part is not None and action == "complete" and not errors:
            try:
                complete_member_part(uow, part.id, expected_version=part.version, now=utcnow(),
                                     actor="member", language=language())
            except IncompleteReport as incomplete:
                errors = incomplete.errors
        uow.commit()
        if action == "autosave":
            return jsonify(version=(part or submission).version, errors=len(errors))
        if part is not None and action == "complete" and not errors:
            flash(_("Danke! Ihr Teil ist als fertig gemeldet."), "success")
            return redirect(url_for(".show", token=token), 303)
        if action == "complete":
            errors = errors or check(template, answers, complete=True, language=language())
        if action == "review":  # a refused upload is reported, not lost behind the review
            errors = {**check(template, answers, complete=True, language=language()),
                      **upload_errors}
            if not errors:
                return redirect(url_for(".review", token=token), 303)
        if errors:
            return _render_form(uow, submission, token, answers, errors=errors, status=422)
    flash(_("Entwurf gespeichert."), "success")
    return redirect(url_for(".form", token=token), 303)


def _store_uploads(uow, submission, template, answers, services):
    errors = {}
    storage = services.settings.uploads_dir
    for question in template.questions:
        upload = request.files.get(question.id)
        if question.type != "file" or upload is None or not upload.filename:
            continue
        data = upload.read(question.max_bytes + 1)
        try:
            with uow.session.begin_nested():
                attachment = add_attachment(
                    uow, submission.id, question.id, filename=upload.filename,
                    content_type=upload.mimetype or "", data=data, storage=storage, now=utcnow(),
                    actor="partner", language=language())
        except InvalidInput as exc:
            errors[question.id] = str(exc)
            continue
        answers[question.id] = str(attachment.id)
    return errors


@bp.get("/<token>/review")
def review(token):
    with services_of(current_app).database.unit_of_work() as uow:
        submission = _load(uow, token, lead_only=True)
        if not awaits_report(submission.state):
            return redirect(url_for(".show", token=token), 303)
        template = template_of(uow, submission)
        answers = submission.answers or {}
        lang = language()
        errors = check(template, answers, complete=True, language=lang)
        if errors:
            return redirect(url_for(".form", token=token), 303)
        previous = previous_answers(uow, submission)
        return render_template(
            "review.html", token=token, template=template, answers=answers, lang=lang,
            t=lambda labels: text_in(labels, lang), previous=previous,
            changed={q.id for q in changes(template, answers, previous)},
            warnings=jumps(template, answers, previous, lang), version=submission.version,
            files=_file_names(uow, submission.id, template, answers), **_summary(uow, submission))


@bp.post("/<token>/submit")
def submit(token):
    with services_of(current_app).database.unit_of_work() as uow:
        submission = _load(uow, token, lead_only=True)
        try:
            expected = int(request.form.get("version", "-1"))
        except ValueError:
            expected = -1
        try:
            submit_report(uow, submission.id, expected_version=expected, now=utcnow(),
                          actor="partner", language=language())
        except IncompleteReport:
            flash(_("Der Bericht ist noch nicht vollständig. Bitte ergänzen Sie die markierten "
                    "Felder."), "error")
            return redirect(url_for(".form", token=token), 303)
        except DraftConflict:
            flash(_("Der Bericht wurde inzwischen von jemand anderem geändert. Bitte prüfen Sie "
                    "ihn noch einmal."), "error")
            return redirect(url_for(".review", token=token), 303)
        except DomainError as exc:
            flash(str(exc), "error")
            return redirect(url_for(".show", token=token), 303)
        uow.commit()
    flash(_("Vielen Dank! Ihr Bericht ist eingegangen. Eine Bestätigung mit Ihren Angaben kommt "
            "per E-Mail."), "success")
    return redirect(url_for(".show", token=token), 303)


@bp.get("/<token>/print")
def print_view(token):
    with services_of(current_app).database.unit_of_work() as uow:
        submission = _load(uow, token, lead_only=True)
        lang = language()
        try:
            template = template_of(uow, submission)
        except NotFound:
            abort(404)
        return render_template(
            "print.html", template=template, answers=submission.answers or {}, lang=lang,
            t=lambda labels: text_in(labels, lang), files=attachment_names(uow, submission.id),
            totals=member_totals(uow, submission), **_summary(uow, submission))


@bp.get("/<token>/files/<int:attachment_id>")
def download(token, attachment_id):
    services = services_of(current_app)
    with services.database.unit_of_work() as uow:
        submission = _load(uow, token)
        attachment = uow.session.get(Attachment, attachment_id)
        if attachment is None or attachment.submission_id != submission.id:
            abort(404)
        path = services.settings.uploads_dir / attachment.storage_key
        return send_file(path, mimetype=attachment.content_type, as_attachment=True,
                         download_name=attachment.filename)


def _parse_date(value: str) -> date | None:
    """A date typed as 31.03.2027 or 2027-03-31 (the page says so), else None."""
    try:
        return parse_date(value or "")
    except ValueError:
        return None


def _request_page(token, page, act, thanks):
    """A small form of the partner's (extension, intent): act on POST, thank and go back.
    Problems with fields are shown beside each field and listed, linked, above the form."""
    error, errors = None, {}
    with services_of(current_app).database.unit_of_work() as uow:
        submission = _load(uow, token, lead_only=True)
        if request.method == "POST":
            try:
                act(uow, submission)
            except RequestProblems as exc:
                errors = exc.errors
            except InvalidInput as exc:
                error = str(exc)
            else:
                uow.commit()
                flash(thanks, "success")
                return redirect(url_for(".show", token=token), 303)
        waiting = pending_extension(uow, submission.id)
        return render_template(page, token=token, error=error, errors=errors,
                               error_list=list(errors.items()), form=request.form,
                               waiting=waiting, **_summary(uow, submission)), (
            422 if error or errors else 200)


@bp.route("/<token>/extension", methods=["GET", "POST"])
def extension(token):
    def act(uow, submission):
        request_extension(uow, submission.id, reason=request.form.get("reason", ""),
                          proposed_due=_parse_date(request.form.get("proposed_due")),
                          now=utcnow(), actor="partner", language=language())

    return _request_page(token, "extension.html", act, _(
        "Ihr Antrag ist eingegangen. Sie erhalten die Entscheidung per E-Mail."))


@bp.route("/<token>/intent", methods=["GET", "POST"])
def intent(token):
    def act(uow, submission):
        declare_intent(uow, submission.id, intent=request.form.get("intent", ""),
                       until=_parse_date(request.form.get("until")),
                       reason=request.form.get("reason", ""), now=utcnow(), actor="partner",
                       language=language())

    return _request_page(token, "intent.html", act, _(
        "Danke für Ihre Rückmeldung. Die Koordinierungsstelle ist informiert."))


@bp.app_errorhandler(410)
def gone(_error):
    return render_template(
        "error.html", title=_("Link abgelaufen"),
        message=_("Dieser Link ist nicht mehr gültig. Bitte schreiben Sie an die "
                  "Koordinierungsstelle der Initiative; sie hilft Ihnen weiter."),
        contacts=g.get("coordinators") or services_of(current_app).settings.coordinator_emails
    ), 410
