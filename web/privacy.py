"""Data care for coordinators: everything stored about a contact, and erasing a contact."""
from __future__ import annotations

from flask import (Blueprint, Response, abort, current_app, flash, redirect, render_template,
                   url_for)
from flask_babel import gettext as _
from flask_login import current_user

from web import services_of
from workflow.errors import InvalidInput, NotFound
from workflow.models import Contact, utcnow
from workflow.retention import contact_data_json, erase_contact

bp = Blueprint("privacy", __name__)


def _contacts_page(partner_id: int) -> str:
    if "actions.contacts" in current_app.view_functions:
        return url_for("actions.contacts", partner_id=partner_id)
    return url_for("overview.index")


@bp.get("/contacts/<int:contact_id>/data.json")
def contact_data(contact_id: int):
    with services_of(current_app).database.unit_of_work() as uow:
        try:
            body = contact_data_json(uow, contact_id)
        except NotFound:
            abort(404)
    return Response(body, mimetype="application/json", headers={
        "Content-Disposition": f'attachment; filename="kontakt-{contact_id}.json"',
        "Cache-Control": "private, no-store"})


@bp.get("/contacts/<int:contact_id>/erase")
def confirm_erase(contact_id: int):
    with services_of(current_app).database.unit_of_work() as uow:
        contact = uow.session.get(Contact, contact_id)
        if contact is None:
            abort(404)
        return render_template("privacy_erase.html", contact=contact, partner=contact.partner,
                               back=_contacts_page(contact.partner_id))


@bp.post("/contacts/<int:contact_id>/erase")
def erase(contact_id: int):
    with services_of(current_app).database.unit_of_work() as uow:
        contact = uow.session.get(Contact, contact_id)
        if contact is None:
            abort(404)
        partner_id = contact.partner_id
        try:
            erased = erase_contact(uow, contact_id, now=utcnow(), actor=current_user.email)
        except InvalidInput as refused:
            flash(str(refused), "error")
            return redirect(url_for("privacy.confirm_erase", contact_id=contact_id), 303)
        uow.commit()
    flash(_("Der Kontakt ist gelöscht. Die Historie nennt ihn jetzt „%(pseudonym)s“.",
            pseudonym=erased.pseudonym), "success")
    return redirect(_contacts_page(partner_id), 303)
