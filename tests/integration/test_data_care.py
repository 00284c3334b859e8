"""Data care: everything stored about a contact, erasing it with the history intact, and the
retention rule the scheduler applies."""
from __future__ import annotations

import json
from datetime import date

from sqlalchemy import func, select, update

from tasks.scheduler import care_for_data
from tests.integration.conftest import berlin
from tests.integration.test_delivery import (  # noqa: F401 (fixtures)
    ALL_DAY, send_the_reminder_with_the_deputy_in_copy, stack)
from tests.support.sign_in import csrf_token, signed_in_client
from web import create_app
from workflow.cycle_setup import plan_cycle
from workflow.cycles import get_programme, open_cycle, set_policy
from workflow.events import EventKind
from workflow.models import (AccessToken, Contact, Event, Notification, Partner, Submission,
                             utcnow)
from workflow.retention import erase_contact

DEPUTY = "d0@example.org"


def bounced_deputy(stack, smtp):
    """One partner whose overdue reminder went to its contact, the deputy refused (a bounce)."""
    services = stack()
    smtp[1].refuse_recipients = {DEPUTY: "550 5.1.1 no such mailbox"}
    send_the_reminder_with_the_deputy_in_copy(services)
    with services.database.unit_of_work() as uow:
        deputy_id = uow.session.scalar(select(Contact.id).where(Contact.email == DEPUTY))
    return services, deputy_id


def snapshot(services):
    """What the cycle's history says, without the personal data."""
    with services.database.unit_of_work() as uow:
        return (uow.session.execute(select(Submission.state, Submission.escalation_level)).all(),
                uow.session.execute(select(Notification.rung, Notification.status,
                                           Notification.sent_at)
                                    .order_by(Notification.id)).all(),
                uow.session.scalar(select(func.count()).select_from(Event)))


def test_a_coordinator_downloads_everything_stored_about_a_contact(stack, smtp):
    services, deputy_id = bounced_deputy(stack, smtp)
    app = create_app(settings=services.settings, services=services)
    coordinator = signed_in_client(app, services, "koordination@example.org")
    response = coordinator.get(f"/contacts/{deputy_id}/data.json")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith("attachment")
    data = json.loads(response.data)
    assert data["contact"]["email"] == DEPUTY and data["contact"]["role"] == "deputy"
    assert "no such mailbox" in data["contact"]["bounce_reason"]
    assert any(DEPUTY in (m["to"] or []) for m in data["mails"])
    assert any(e["kind"] == "contact_bounced" for e in data["events"])
    assert coordinator.get("/contacts/99999/data.json").status_code == 404


def test_erasing_a_contact_keeps_the_history_under_a_pseudonym(stack, smtp):
    services, deputy_id = bounced_deputy(stack, smtp)
    before = snapshot(services)
    app = create_app(settings=services.settings, services=services)
    coordinator = signed_in_client(app, services, "koordination@example.org")
    page = coordinator.get(f"/contacts/{deputy_id}/erase")
    assert page.status_code == 200 and DEPUTY in page.get_data(as_text=True)
    response = coordinator.post(f"/contacts/{deputy_id}/erase",
                                data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert response.status_code == 303

    states, mails, events = before
    after_states, after_mails, after_events = snapshot(services)
    assert (after_states, after_mails) == (states, mails) and after_events == events + 1
    with services.database.unit_of_work() as uow:
        assert uow.session.get(Contact, deputy_id) is None
        erased = uow.session.scalars(select(Event).where(
            Event.kind == EventKind.CONTACT_ERASED)).one()
        assert erased.actor == "koordination@example.org"
        pseudonym = erased.payload["pseudonym"]
        stored = " ".join(json.dumps(row, default=str) for row in uow.session.execute(
            select(Event.payload)).scalars()) + " ".join(
            json.dumps([n.sent_to, n.sent_text, n.refused, n.last_error], default=str)
            for n in uow.session.scalars(select(Notification)))
    assert DEPUTY not in stored and pseudonym in stored


def test_the_last_reporting_contact_of_an_active_partner_is_not_erased(stack, smtp):
    services, _ = bounced_deputy(stack, smtp)
    with services.database.unit_of_work() as uow:
        reporting = uow.session.scalar(select(Contact.id).where(Contact.email == "p0@example.org"))
    app = create_app(settings=services.settings, services=services)
    coordinator = signed_in_client(app, services, "koordination@example.org")
    page = coordinator.get(f"/contacts/{reporting}/erase").get_data(as_text=True)
    response = coordinator.post(f"/contacts/{reporting}/erase",
                                data={"csrf_token": csrf_token(page)}, follow_redirects=True)
    assert "letzte berichtende Kontakt" in response.get_data(as_text=True)
    with services.database.unit_of_work() as uow:
        assert uow.session.get(Contact, reporting) is not None


def test_retention_blanks_old_send_logs_and_links_and_erases_partners_that_left(stack, smtp):
    services, _ = bounced_deputy(stack, smtp)
    with services.database.unit_of_work() as uow:
        programme = get_programme(uow)
        set_policy(uow, programme, {**ALL_DAY.to_dict(), "retention_cycles": 1})
        assert uow.session.scalar(select(func.count()).select_from(AccessToken))
        uow.session.execute(update(Partner).values(active=False))  # the partner left ...
        uow.session.add(Partner(programme_id=programme.id, name="Stadt Solingen",
                                kind="kommune", active=True))  # ... another joined
        uow.commit()
    with services.database.unit_of_work() as uow:  # next year's cycle, planned: keeps nothing
        plan_cycle(uow, get_programme(uow), 2028, date(2028, 2, 1), date(2028, 4, 28),
                   now=utcnow(), actor="test")
        uow.commit()
    [untouched] = care_for_data(services, now=utcnow())
    assert not untouched.changed
    with services.database.unit_of_work() as uow:
        open_cycle(uow, get_programme(uow), 2028, now=berlin(date(2028, 2, 1), 7),
                   opens_on=date(2028, 2, 1), due_on=date(2028, 4, 28))
        uow.commit()
    before = snapshot(services)

    [result] = care_for_data(services, now=utcnow())
    assert result.mails_blanked > 0 and result.links_deleted > 0 and result.contacts_erased == 3
    with services.database.unit_of_work() as uow:
        old = uow.session.scalars(select(Notification).where(Notification.sent_at.isnot(None)))
        assert all(n.sent_text is None and n.sent_to is None and n.refused is None for n in old)
        assert uow.session.scalar(select(func.count()).select_from(AccessToken)) == 0
        assert uow.session.scalar(select(func.count()).select_from(Contact)) == 0
        [applied] = uow.session.scalars(select(Event).where(
            Event.kind == EventKind.RETENTION_APPLIED)).all()
        assert applied.payload["contacts_erased"] == 3
    states, mails, events = before
    assert snapshot(services)[:2] == (states, mails)  # the history stays

    [again] = care_for_data(services, now=utcnow())
    assert not again.changed  # idempotent: nothing left to do, no second event


def test_erase_refuses_unknown_contacts(stack, smtp):
    services, _ = bounced_deputy(stack, smtp)
    with services.database.unit_of_work() as uow:
        try:
            erase_contact(uow, 99999, now=utcnow(), actor="test")
        except Exception as exc:  # noqa: BLE001 - the kind is what is checked
            assert type(exc).__name__ == "NotFound"
        else:
            raise AssertionError("erasing an unknown contact did not refuse")


def test_the_erase_page_is_valid_html(stack, smtp, tmp_path):
    from tests.support.nu_checker import nu_check
    services, deputy_id = bounced_deputy(stack, smtp)
    app = create_app(settings=services.settings, services=services)
    coordinator = signed_in_client(app, services, "koordination@example.org")
    page = tmp_path / "erase.html"
    page.write_text(coordinator.get(f"/contacts/{deputy_id}/erase").get_data(as_text=True),
                    encoding="utf-8")
    problems = [m for m in nu_check([page]) if m.type != "info" or m.is_warning]
    assert not problems, "\n".join(map(str, problems))
