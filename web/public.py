"""The health check: the one page open to everyone besides the partner's link pages."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy import literal, select

from web import services_of

bp = Blueprint("public", __name__)


@bp.get("/healthz")
def healthz():
    services = services_of(current_app)
    with services.database.unit_of_work() as uow:
        uow.session.execute(select(literal(1)))
    return jsonify(status="ok")
