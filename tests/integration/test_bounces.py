"""Bounces that come back by mail, on real PostgreSQL and SQLite, a real SMTP server (aiosmtpd)
and a Maildir as the mail server delivers into it: each mail leaves with its own signed envelope
sender (VERP); a Postfix-style report of a hard bounce marks the contact and the next mail of the
ladder goes to the deputy; forged, delayed and unreadable messages change nothing and are kept;
nothing is read twice."""
from __future__ import annotations

import logging
import mailbox
import os
import subprocess
import sys
from datetime import date
from datetime import time as clock_time
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select, update

from infra.bounce_mailbox import fetch_configured
from reportcycles.bootstrap import build
from tasks.scheduler import make_scheduler
from tests.integration.conftest import berlin, make_settings, seed_programme
from tests.support.mail import addresses
from tests.support.report import load_shipped_template
from tests.support.servers import ROOT
from workflow.bounces import VerpAddresses
from workflow.cycles import get_programme, open_cycle
from workflow.delivery import deliver
from workflow.events import EventKind
from workflow.models import Contact, Event, Notification, utcnow
from workflow.partners import ensure_programme, import_partners
from workflow.policy import END_OF_DAY, ReportingPolicy
from workflow.sweep import sweep

OPENS, DUE = date(2027, 2, 1), date(2027, 4, 30)
ALL_DAY = ReportingPolicy(window_start=clock_time(0, 0), window_end=END_OF_DAY,
                          window_working_days_only=False)
BOUNCE_ADDRESS = "bounces@berichte.example.org"


@pytest.fixture
def bounce_maildir(tmp_path) -> Path:
    return tmp_path / "bounces"


@pytest.fixture
def stack(monkeypatch, tmp_path, database_url, smtp, bounce_maildir):
    """Services that send to the real SMTP server, with VERP and the bounce Maildir set, and the
    environment for running the real `reportcycles` command against the same database."""
    settings, env = make_settings(monkeypatch, tmp_path, database_url, smtp[0].port,
                                  BOUNCE_ADDRESS=BOUNCE_ADDRESS,
                                  BOUNCE_MAILDIR=str(bounce_maildir))
    services = build(settings, "inline")
    services.env = env
    yield services
    services.database.dispose()


def verp(services) -> VerpAddresses:
    return VerpAddresses(BOUNCE_ADDRESS, services.settings.secret_key)


def invite(services, partners=1):
    """A cycle opened and swept at its opening: the invitations reach the SMTP server."""
    seed_programme(services, partners=partners, policy=ALL_DAY)
    with services.database.unit_of_work() as uow:
        open_cycle(uow, get_programme(uow), 2027, now=berlin(OPENS, 7), opens_on=OPENS,
                   due_on=DUE)
        uow.commit()
    with services.database.unit_of_work() as uow:
        sweep(uow, berlin(OPENS))
        uow.commit()


def received(handler, to: str) -> dict:
    [mail] = [m for m in handler.messages if to in m["envelope_to"]]
    return mail


def notification_of(services, mail) -> Notification:
    with services.database.unit_of_work() as uow:
        row = uow.session.scalars(select(Notification).where(
            Notification.message_id == mail["message"]["Message-ID"])).one()
        uow.session.expunge_all()
        return row


def postfix_bounce(mail: dict, recipient: str, *, action="failed", status="5.1.1",
                   diagnostic="smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User "
                              "unknown in virtual mailbox table", to: str | None = None) -> bytes:
    """The report Postfix writes when a remote server refuses a recipient after accepting the
    mail: multipart/report with a notification, a message/delivery-status part and the returned
    mail's headers, delivered (Delivered-To, X-Original-To) to the envelope sender it names."""
    sender = mail["envelope_from"]
    to = to or sender
    original: EmailMessage = mail["message"]
    headers = original.as_bytes(policy=policy.SMTP).split(b"\r\n\r\n", 1)[0].decode()
    diagnostic = diagnostic.format(rcpt=recipient)
    delayed = action == "delayed"
    boundary = "7E2C11C0A61.1801903462/mail.berichte.example.org"
    text = f"""\
Return-Path: <>
X-Original-To: {to}
Delivered-To: {to}
Received: by mail.berichte.example.org (Postfix)
\tid 7E2C11C0A61; Mon,  1 Feb 2027 08:31:02 +0100 (CET)
Date: Mon,  1 Feb 2027 08:31:02 +0100 (CET)
From: MAILER-DAEMON@mail.berichte.example.org (Mail Delivery System)
Subject: {"Delayed Mail (still being retried)" if delayed
          else "Undelivered Mail Returned to Sender"}
To: {to}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="{boundary}"
Content-Transfer-Encoding: 8bit
Message-Id: <20270201073102.7E2C11C0A61@mail.berichte.example.org>

This is a MIME-encapsulated message.

--{boundary}
Content-Description: {"Notification" if not delayed else "Delayed notification"}
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

This is the mail system at host mail.berichte.example.org.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

<{recipient}>: host mx.example.org[192.0.2.25] said: {diagnostic}

--{boundary}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.berichte.example.org
X-Postfix-Queue-ID: 7E2C11C0A61
X-Postfix-Sender: rfc822; {sender}
Arrival-Date: Mon,  1 Feb 2027 08:31:01 +0100 (CET)

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; mx.example.org
Diagnostic-Code: {diagnostic[:60]}
    {diagnostic[60:]}

--{boundary}
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers
Content-Transfer-Encoding: 8bit

Return-Path: <{sender}>
{headers}

--{boundary}--
"""
    return text.replace("\n", "\r\n").encode()


def drop(maildir: Path, raw: bytes) -> str:
    """Deliver into the Maildir as a mail server does: written to tmp/, renamed into new/."""
    return mailbox.Maildir(maildir, factory=None, create=True).add(raw)


def files(maildir: Path, sub: str) -> dict[str, bytes]:
    folder = maildir / sub
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


def bounced_events(services) -> list[Event]:
    with services.database.unit_of_work() as uow:
        found = list(uow.session.scalars(select(Event).where(
            Event.kind == EventKind.CONTACT_BOUNCED).order_by(Event.id)))
        uow.session.expunge_all()
        return found


def contact(services, email) -> Contact:
    with services.database.unit_of_work() as uow:
        found = uow.session.scalars(select(Contact).where(Contact.email == email)).one()
        uow.session.expunge_all()
        return found


def reportcycles(services, *args) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "reportcycles.cli", *args], cwd=ROOT,
                            env={**os.environ, **services.env}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result


def test_each_mail_leaves_with_its_own_signed_envelope_sender(stack, smtp):
    _, handler = smtp
    invite(stack, partners=3)
    assert len(handler.messages) == 3
    for mail in handler.messages:
        row = notification_of(stack, mail)
        local, _, domain = mail["envelope_from"].partition("@")
        assert local.startswith(f"bounces+{row.id}-") and domain == "berichte.example.org"
        assert verp(stack).notification_id(mail["envelope_from"]) == row.id
        assert addresses(mail["message"]["From"]) == ["berichte@example.org"]  # From unchanged
    assert len({m["envelope_from"] for m in handler.messages}) == 3


def test_without_a_bounce_address_the_from_address_is_the_envelope_sender(
        monkeypatch, tmp_path, database_url, smtp):
    settings, _ = make_settings(monkeypatch, tmp_path, database_url, smtp[0].port)
    services = build(settings, "inline")
    try:
        invite(services)
    finally:
        services.database.dispose()
    assert [m["envelope_from"] for m in smtp[1].messages] == ["berichte@example.org"]


def test_a_hard_bounce_in_the_maildir_marks_the_contact_and_the_next_mail_goes_to_the_deputy(
        stack, smtp, bounce_maildir):
    _, handler = smtp
    invite(stack)
    invitation = received(handler, "p0@example.org")
    drop(bounce_maildir, postfix_bounce(invitation, "p0@example.org"))

    fetched = reportcycles(stack, "bounces", "fetch")
    assert "Rückläufer: 1 verbucht" in fetched.stdout
    assert "Kontakt als unzustellbar markiert (reporting)" in fetched.stdout
    assert "bounced" in fetched.stderr and "p0@example.org" not in fetched.stderr  # no address

    bouncing = contact(stack, "p0@example.org")
    assert bouncing.bounced_at is not None and "5.1.1" in bouncing.bounce_reason
    assert "User unknown" in bouncing.bounce_reason
    [event] = bounced_events(stack)
    row = notification_of(stack, invitation)
    assert event.submission_id == row.submission_id and event.actor == "bounce"
    assert event.payload | {"reply": None} == {
        "contact_id": bouncing.id, "role": "reporting", "reply": None, "status": "5.1.1",
        "notification_id": row.id, "rung": "invitation", "via": "dsn"}
    assert contact(stack, "d0@example.org").bounced_at is None
    assert files(bounce_maildir, "new") == {}
    assert [name.rpartition(":2,")[2] for name in files(bounce_maildir, "cur")] == ["S"]

    handler.clear()
    with stack.database.unit_of_work() as uow:  # a later rung of the ladder
        sweep(uow, berlin(date(2027, 4, 1)))
        uow.commit()
    [reminder] = handler.messages
    assert reminder["envelope_to"] == ["d0@example.org"]
    assert addresses(reminder["message"]["To"]) == ["d0@example.org"]

    assert "Rückläufer: 0 verbucht" in reportcycles(stack, "bounces", "fetch").stdout
    assert len(bounced_events(stack)) == 1


def test_forged_delayed_and_unreadable_messages_change_nothing_are_kept_and_read_once(
        stack, smtp, bounce_maildir, caplog):
    _, handler = smtp
    invite(stack)
    invitation = received(handler, "p0@example.org")
    good = invitation["envelope_from"]
    local, _, domain = good.partition("@")
    forged_to = f"{local[:-4]}0000@{domain}"  # the same mail, a MAC made up
    dropped = {
        "forged": drop(bounce_maildir, postfix_bounce(invitation, "p0@example.org",
                                                      to=forged_to)
                       .replace(good.encode(), forged_to.encode())),
        "delayed": drop(bounce_maildir, postfix_bounce(
            invitation, "p0@example.org", action="delayed", status="4.4.1",
            diagnostic="X-Postfix; connect to mx.example.org[192.0.2.25]:25: Connection "
                       "timed out")),
        "garbage": drop(bounce_maildir, b"\x00\xff not a mail \x80\r\n\r\n\x81"),
        "vacation": drop(bounce_maildir, f"From: p0@example.org\r\nTo: {good}\r\nSubject: "
                         "Abwesend\r\n\r\nIch bin bis Montag nicht im Haus.\r\n".encode()),
    }
    before = files(bounce_maildir, "new")
    caplog.set_level(logging.INFO)

    report = fetch_configured(stack)
    assert report.bounces == [] and report.waiting == []
    assert report.ignored == [dropped["delayed"]]
    kept = dict(report.kept)
    assert set(kept) == {dropped["forged"], dropped["garbage"], dropped["vacation"]}
    assert kept[dropped["forged"]].startswith("forged")
    assert "not a delivery status report" in kept[dropped["garbage"]]

    assert contact(stack, "p0@example.org").bounced_at is None
    assert bounced_events(stack) == []
    # Kept byte for byte: seen when understood, unseen and flagged for a person when not.
    after = files(bounce_maildir, "cur")
    assert files(bounce_maildir, "new") == {}
    assert {name.partition(":")[0]: content for name, content in after.items()} == before
    flags = {name.partition(":")[0]: name.rpartition(":2,")[2] for name in after}
    assert flags == {dropped["forged"]: "F", dropped["garbage"]: "F",
                     dropped["vacation"]: "F", dropped["delayed"]: "S"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3 and any("forged" in w for w in warnings)
    assert "p0@example.org" not in caplog.text

    again = fetch_configured(stack)  # nothing is read twice
    assert (again.bounces, again.ignored, again.kept) == ([], [], [])
    assert files(bounce_maildir, "cur") == after

    drop(bounce_maildir, postfix_bounce(invitation, "p0@example.org"))
    assert [b.result for b in fetch_configured(stack).bounces] == ["marked"]
    assert fetch_configured(stack).bounces == []
    assert len(bounced_events(stack)) == 1


def test_a_bounced_coordinator_notice_is_recorded_as_an_event_only(stack, smtp,
                                                                    bounce_maildir):
    _, handler = smtp
    invite(stack)
    with stack.database.unit_of_work() as uow:
        notice = uow.session.scalar(select(Notification.id).where(
            Notification.rung == "deadline_notice"))
        uow.session.execute(update(Notification).where(Notification.id == notice).values(
            status="queued", not_before=utcnow()))
        uow.commit()
    assert deliver(stack.mail, [notice]).sent == [notice]
    mail = received(handler, "koordination@example.org")
    bounce = postfix_bounce(mail, "koordination@example.org")
    drop(bounce_maildir, bounce)
    drop(bounce_maildir, bounce)  # the same report twice (a server that retried its report)

    report = fetch_configured(stack)
    assert [b.result for b in report.bounces] == ["coordinator", "recorded_before"]
    [event] = bounced_events(stack)
    assert event.payload["role"] == "coordinator" and event.payload["contact_id"] is None
    assert event.payload["address"] == "koordination@example.org"
    assert event.payload["notification_id"] == notice and event.submission_id is None
    with stack.database.unit_of_work() as uow:
        assert uow.session.scalars(select(Contact).where(
            Contact.bounced_at.is_not(None))).all() == []


def test_a_member_cities_bounce_marks_its_own_contact_not_the_lead_partners(
        stack, smtp, bounce_maildir):
    _, handler = smtp
    group_csv = ("name,kind,contact_name,contact_email,deputy_email,head_name,head_email,"
                 "language,joined_on,group\n"
                 "Städtekooperation,Kooperation,K,k@example.org,,,,de,2019-01-01,\n"
                 "Stadt Herne,Kommune,H,herne@example.org,hd@example.org,,,de,2019-01-01,"
                 "Städtekooperation\n")
    with stack.database.unit_of_work() as uow:
        programme = ensure_programme(uow, policy=ALL_DAY)
        import_partners(uow, programme, group_csv)
        load_shipped_template(uow, programme)
        open_cycle(uow, programme, 2027, now=berlin(OPENS, 7), opens_on=OPENS, due_on=DUE)
        uow.commit()
    with stack.database.unit_of_work() as uow:
        sweep(uow, berlin(OPENS))
        uow.commit()
    member_invitation = received(handler, "herne@example.org")
    assert member_invitation["message"]["X-Reportcycles-Rung"] == "member_invitation"
    drop(bounce_maildir, postfix_bounce(member_invitation, "herne@example.org"))

    [bounce] = fetch_configured(stack).bounces
    assert bounce.partner == "Stadt Herne" and bounce.roles == ["reporting"]
    assert contact(stack, "herne@example.org").bounced_at is not None
    assert contact(stack, "k@example.org").bounced_at is None


def test_the_scheduler_reads_bounces_only_when_a_bounce_maildir_is_set(
        stack, monkeypatch, tmp_path, database_url, smtp):
    job = make_scheduler(stack, background=True).get_job("bounces")
    assert job is not None and job.func is fetch_configured
    settings, _ = make_settings(monkeypatch, tmp_path, database_url, smtp[0].port,
                                BOUNCE_ADDRESS=BOUNCE_ADDRESS, BOUNCE_MAILDIR="")
    plain = build(settings, "none")
    try:
        assert make_scheduler(plain, background=True).get_job("bounces") is None
    finally:
        plain.database.dispose()
