"""The read-only JSON API for the ministry's own reporting. A request names its account with
`Authorization: Bearer <token>` (tokens are issued on the account page); a signed-in browser may
read it too. Nothing here writes, except when a token was last used."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, g, jsonify, request
from flask_login import current_user

from web import ID_MAX, parse_id, services_of
from workflow import api_read
from workflow.api_tokens import account_for_token
from workflow.errors import NotFound
from workflow.models import utcnow
from workflow.states import SubmissionState

bp = Blueprint("api", __name__, url_prefix="/api/v1")
STATES = {state.value for state in SubmissionState}


def _refused(message: str):
    response = jsonify(error="unauthorized", message=message)
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="reportcycles"'
    return response


@bp.before_request
def authenticate():
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _refused("Authorization must be 'Bearer <token>'.")
        with services_of(current_app).database.unit_of_work() as uow:
            account = account_for_token(uow, token.strip(), now=utcnow())
            uow.commit()
        if account is None:
            return _refused("Unknown, revoked or inactive token.")
        g.api_account = account
        return None
    if current_user.is_authenticated:
        return None
    return _refused("A token is needed: Authorization: Bearer <token>.")


# What the API answers where a person would get an error page: a code and a default message.
ERRORS = {400: ("bad_request", "bad request"), 404: ("not_found", "not found"),
          405: ("method_not_allowed", "method not allowed"),
          413: ("too_large", "request too large"),
          500: ("internal_error", "internal error, logged")}


def json_error(status: int, message: str | None = None):
    error, default = ERRORS[status]
    response = jsonify(error=error, message=message or default)
    response.status_code = status
    return response


@bp.errorhandler(404)
def not_found(error):
    return json_error(404, getattr(error, "description", None))


def _read(function, *args, **kwargs):
    with services_of(current_app).database.unit_of_work() as uow:
        try:
            return jsonify(function(uow, *args, **kwargs))
        except NotFound as missing:
            abort(404, description=str(missing))


def _whole_number(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    value = parse_id(raw)
    if value is None:
        abort(400, description=f"{name} must be a whole number from 0 to {ID_MAX}")
    return value


def _page_size() -> int:
    limit = _whole_number("limit", 100)
    if not 1 <= limit <= api_read.MAX_PAGE:
        abort(400, description=f"limit must be a whole number from 1 to {api_read.MAX_PAGE}")
    return limit


@bp.errorhandler(400)
def bad_request(error):
    return json_error(400, getattr(error, "description", None))


@bp.get("/cycles")
def cycles():
    return _read(api_read.cycles)


@bp.get("/cycles/<int:cycle_id>")
def cycle(cycle_id: int):
    return _read(api_read.cycle, cycle_id)


@bp.get("/cycles/<int:cycle_id>/submissions")
def submissions(cycle_id: int):
    state = request.args.get("state") or None
    if state is not None and state not in STATES:
        abort(400, description=f"state must be one of {', '.join(sorted(STATES))}")
    return _read(api_read.submissions, cycle_id, state=state,
                 after=_whole_number("after", 0), limit=_page_size(),
                 with_answers=request.args.get("answers") == "1")


@bp.get("/submissions/<int:submission_id>")
def submission(submission_id: int):
    return _read(api_read.submission, submission_id)
