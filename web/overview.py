"""The coordinators' start page and the overview of one cycle."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template
from sqlalchemy import select

from web import services_of
from web.auth import login_required
from workflow.cycles import cycle_status
from workflow.models import Cycle, Programme

bp = Blueprint("overview", __name__)


@bp.get("/")
@login_required
def index():
    services = services_of(current_app)
    with services.database.unit_of_work() as uow:
        programmes = list(uow.session.scalars(select(Programme).order_by(Programme.id)))
        cycles = list(uow.session.scalars(select(Cycle).order_by(Cycle.year.desc())))
        statuses = [(cycle, cycle_status(uow, cycle)) for cycle in cycles]
        return render_template("index.html", programmes=programmes, statuses=statuses)
