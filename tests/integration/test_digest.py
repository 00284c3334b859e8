"""The coordinators' daily digest: once a day at its hour, what changed since the last one."""
from __future__ import annotations

from datetime import date, time

from sqlalchemy import select

from tasks.scheduler import tick
from tests.integration.conftest import berlin, seed_programme
from tests.integration.test_delivery import ALL_DAY, DUE, OPENS, stack  # noqa: F401 (fixture)
from tests.support.report import VALID_ANSWERS
from workflow.cycles import get_programme, open_cycle
from workflow.models import ExtensionRequest, Notification, Partner, Submission
from workflow.reporting import save_draft, start_report, submit_report
from workflow.requests import request_extension

DIGEST_POLICY = ALL_DAY.with_changes(digest_at=time(7, 0), window_start=time(8, 0),
                                     window_end=time(10, 0), window_working_days_only=True)
DAY_ONE, DAY_TWO, DAY_THREE = date(2027, 2, 1), date(2027, 2, 2), date(2027, 2, 3)


def digests(handler):
    with handler.lock:
        return [m["message"] for m in handler.messages
                if m["message"]["X-Reportcycles-Rung"] == "digest"]


def text_of(message) -> str:
    return message.get_body(("plain",)).get_content()


def partner_submission(services, name):
    with services.database.unit_of_work() as uow:
        return uow.session.scalar(select(Submission.id).join(Partner).where(Partner.name == name))


def a_day_of_news(services):
    """Partner 00000 submits and partner 00001 asks for more time on the opening day."""
    seed_programme(services, partners=3, policy=DIGEST_POLICY)
    with services.database.unit_of_work() as uow:
        open_cycle(uow, get_programme(uow), 2027, now=berlin(OPENS, 6), opens_on=OPENS,
                   due_on=DUE)
        uow.commit()
    first = partner_submission(services, "Partner 00000")
    second = partner_submission(services, "Partner 00001")
    when = berlin(DAY_ONE, 11)
    with services.database.unit_of_work() as uow:
        submission = start_report(uow, first, now=when, actor="partner")
        save_draft(uow, first, VALID_ANSWERS, expected_version=submission.version, now=when,
                   actor="partner")
        submit_report(uow, first, expected_version=submission.version, now=when, actor="partner")
        request_extension(uow, second, reason="Personalwechsel <im> Amt", now=when,
                          proposed_due=date(2027, 5, 31), actor="partner")
        uow.commit()
        return uow.session.scalar(select(ExtensionRequest.id))


def test_the_digest_comes_once_a_day_at_its_hour_and_lists_what_changed(stack, smtp):
    services = stack()
    _, handler = smtp
    request_id = a_day_of_news(services)

    tick(services, now=berlin(DAY_TWO, 6, 55))
    assert digests(handler) == []  # not before its hour
    tick(services, now=berlin(DAY_TWO, 7, 1))
    [mail] = digests(handler)  # at its hour, outside the partners' send window
    assert mail["To"] == "koordination@example.org"
    body = text_of(mail)
    assert "Eingereicht (1):" in body and "- Partner 00000" in body
    assert f"/extensions/{request_id}" in body and "Partner 00001" in body
    html = mail.get_body(("html",)).get_content()
    assert f'/extensions/{request_id}"' in html

    tick(services, now=berlin(DAY_TWO, 9))
    assert len(digests(handler)) == 1  # once a day

    tick(services, now=berlin(DAY_THREE, 7, 1))
    [_, second] = digests(handler)  # the request still waits: it is said again
    assert "Eingereicht" not in text_of(second)
    assert f"/extensions/{request_id}" in text_of(second)


def test_a_day_without_news_sends_no_digest(stack, smtp):
    services = stack()
    _, handler = smtp
    seed_programme(services, partners=2, policy=DIGEST_POLICY)
    with services.database.unit_of_work() as uow:
        open_cycle(uow, get_programme(uow), 2027, now=berlin(OPENS, 6), opens_on=OPENS,
                   due_on=DUE)
        uow.commit()
    tick(services, now=berlin(DAY_TWO, 7, 1))
    tick(services, now=berlin(DAY_TWO, 7, 2))
    assert digests(handler) == []
    with services.database.unit_of_work() as uow:
        [row] = uow.session.scalars(select(Notification).where(Notification.email == "digest"))
        assert row.status == "skipped" and row.last_error == "nothing to report"


def test_without_a_digest_hour_there_is_no_digest(stack, smtp):
    services = stack()
    _, handler = smtp
    seed_programme(services, partners=2, policy=ALL_DAY.with_changes(digest_at=None))
    with services.database.unit_of_work() as uow:
        open_cycle(uow, get_programme(uow), 2027, now=berlin(OPENS, 6), opens_on=OPENS,
                   due_on=DUE)
        uow.commit()
    tick(services, now=berlin(DAY_TWO, 7, 1))
    with services.database.unit_of_work() as uow:
        assert uow.session.scalar(select(Notification.id).where(
            Notification.email == "digest")) is None
    assert digests(handler) == []
