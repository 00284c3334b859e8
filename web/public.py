"""The health check (public) and the cycle overview (signed in)."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, render_template
from sqlalchemy import select, text

from web import services_of
from web.auth import login_required
from workflow.cycles import cycle_status
from workflow.models import Cycle, Programme

bp = Blueprint("public", __name__)


@bp.get("/healthz")
def healthz():
    services = services_of(current_app)
    with services.database.unit_of_work() as uow:
        uow.session.execute(text("SELECT 1"))
    return jsonify(status="ok")


@bp.get("/")
@login_required
def index():
    services = services_of(current_app)
    with services.database.unit_of_work() as uow:
        programmes = list(uow.session.scalars(select(Programme).order_by(Programme.id)))
        cycles = list(uow.session.scalars(select(Cycle).order_by(Cycle.year.desc())))
        statuses = [(cycle, cycle_status(uow, cycle)) for cycle in cycles]
        return render_template("index.html", programmes=programmes, statuses=statuses)
