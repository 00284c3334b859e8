"""The partner's page behind the personal link. Opening it changes nothing; buttons do."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for

from web import services_of
from workflow.errors import DomainError, NotFound
from workflow.models import utcnow
from workflow.states import Action, awaits_report
from workflow.submissions import LinkExpired, apply_action, submission_for_token

bp = Blueprint("partner", __name__, url_prefix="/r")


def _load(uow, token):
    try:
        return submission_for_token(uow, token, now=utcnow())
    except LinkExpired:
        abort(410)
    except NotFound:
        abort(404)


@bp.get("/<token>")
def show(token):
    services = services_of(current_app)
    with services.database.unit_of_work() as uow:
        submission = _load(uow, token)
        view = {"partner": submission.partner.name, "year": submission.cycle.year,
                "programme": submission.cycle.programme.name, "due_on": submission.due_on,
                "state": str(submission.state), "can_submit": awaits_report(submission.state),
                "submitted_at": submission.submitted_at}
    return render_template("partner.html", token=token, **view)


@bp.post("/<token>/submit")
def submit(token):
    services = services_of(current_app)
    with services.database.unit_of_work() as uow:
        submission = _load(uow, token)
        try:
            apply_action(uow, submission.id, Action.SUBMIT, now=utcnow(), actor="partner")
        except DomainError as exc:
            flash(str(exc), "error")
            return redirect(url_for(".show", token=token), 303)
        uow.commit()
    flash("Vielen Dank! Ihr Bericht ist eingegangen. Eine Bestätigung kommt per E-Mail.",
          "success")
    return redirect(url_for(".show", token=token), 303)


@bp.app_errorhandler(410)
def gone(_error):
    return render_template(
        "error.html", title="Link abgelaufen",
        message="Dieser Link ist nicht mehr gültig. Bitte wenden Sie sich an die Koordinierungsstelle "
                "der Initiative, die Ihnen einen neuen Link schickt."), 410
