"""The envelope sender per mail (VERP) and reading delivery status reports as mail servers write
them: Postfix's hard bounce and delay notice, Exim's bounce, an expired queue, a UTF-8 report."""
import email

import pytest

from infra.bounce_mailbox import parse_delivery_report, read_bounce
from infra.settings import ConfigError, Settings
from workflow.bounces import VerpAddresses, is_hard, return_path_for

SECRET = "unit-test-secret"
VERP = VerpAddresses("bounces@berichte.example.org", SECRET)


# VERP --------------------------------------------------------------------------------------------

def test_a_verp_address_names_its_mail_and_round_trips():
    address = VERP.address(4711)
    local, _, domain = address.partition("@")
    assert domain == "berichte.example.org" and local.startswith("bounces+4711-")
    assert len(local) <= 64
    assert VERP.notification_id(address) == 4711
    assert VERP.notification_id(f"<{address.upper()}>") == 4711  # servers may change the case


def test_a_forged_or_altered_verp_address_names_no_mail():
    address = VERP.address(4711)
    mac = address.split("-")[1].split("@")[0]
    assert VERP.notification_id(address.replace("4711", "4712")) is None  # another row, same MAC
    assert VERP.notification_id(address.replace(mac, "0" * len(mac))) is None
    assert VERP.notification_id(address.replace(mac, mac[:-1])) is None
    assert VerpAddresses("bounces@berichte.example.org", "another-key").notification_id(
        address) is None
    assert VERP.ours(address.replace(mac, "0" * len(mac)))  # ours, but forged


@pytest.mark.parametrize("address", [
    "bounces@berichte.example.org", "bounces+4711@berichte.example.org",
    "other+4711-abcdefabcdef@berichte.example.org", "bounces+4711-abcdefabcdef@example.org",
    "koordination@example.org", "", "no address at all"])
def test_addresses_that_are_no_verp_address_of_ours(address):
    assert not VERP.ours(address) and VERP.notification_id(address) is None


def test_a_bounce_address_with_its_own_plus_still_works():
    verp = VerpAddresses("rc+bounces@example.org", SECRET)
    assert verp.notification_id(verp.address(12)) == 12


def test_without_a_bounce_address_mails_leave_with_their_from_as_envelope_sender():
    class Row:
        id = 9
    assert return_path_for(None, SECRET)(Row()) is None
    assert return_path_for("", SECRET)(Row()) is None
    assert VERP.notification_id(return_path_for("bounces@berichte.example.org",
                                                 SECRET)(Row())) == 9


def test_a_bounce_address_that_is_no_address_is_refused():
    with pytest.raises(ValueError):
        VerpAddresses("bounces", SECRET)


@pytest.mark.parametrize("status,hard", [("5.1.1", True), ("5.0.0", True), (" 5.7.1 ", True),
                                         ("4.4.1", False), ("4.2.2", False), ("2.0.0", False),
                                         ("", False), ("550", False)])
def test_only_5xx_statuses_are_hard(status, hard):
    assert is_hard(status) is hard


# Delivery status reports --------------------------------------------------------------------------

POSTFIX = """\
Return-Path: <>
X-Original-To: {to}
Delivered-To: {to}
Received: by mail.berichte.example.org (Postfix)
\tid 4F1A81C0A5F; Mon,  1 Feb 2027 08:31:02 +0100 (CET)
Date: Mon,  1 Feb 2027 08:31:02 +0100 (CET)
From: MAILER-DAEMON@mail.berichte.example.org (Mail Delivery System)
Subject: {subject}
To: {to}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4F1A81C0A5F.1801900262/mail.berichte.example.org"
Content-Transfer-Encoding: 8bit
Message-Id: <20270201073102.4F1A81C0A5F@mail.berichte.example.org>

This is a MIME-encapsulated message.

--4F1A81C0A5F.1801900262/mail.berichte.example.org
Content-Description: Notification
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

This is the mail system at host mail.berichte.example.org.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

--4F1A81C0A5F.1801900262/mail.berichte.example.org
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.berichte.example.org
X-Postfix-Queue-ID: 4F1A81C0A5F
X-Postfix-Sender: rfc822; {sender}
Arrival-Date: Mon,  1 Feb 2027 08:31:01 +0100 (CET)

{recipients}
--4F1A81C0A5F.1801900262/mail.berichte.example.org
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers
Content-Transfer-Encoding: 8bit

Return-Path: <{sender}>
From: =?utf-8?q?Erfolgsfaktor_Interkulturelle_=C3=96ffnung?= <berichte@example.org>
To: p0@example.org
Subject: Einladung
Message-ID: <rc.4711.0123456789ab@berichte.example.org>

--4F1A81C0A5F.1801900262/mail.berichte.example.org--
"""

USER_UNKNOWN = """\
Final-Recipient: rfc822; p0@example.org
Original-Recipient: rfc822;p0@example.org
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; 550 5.1.1 <p0@example.org>: Recipient address rejected:
    User unknown in virtual mailbox table
"""

DELAYED = """\
Final-Recipient: rfc822; p0@example.org
Original-Recipient: rfc822;p0@example.org
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx.example.org[192.0.2.25]:25: Connection
    timed out
Will-Retry-Until: Mon, 6 Feb 2027 08:31:01 +0100 (CET)
"""


def postfix(recipients=USER_UNKNOWN, to=None, sender=None,
            subject="Undelivered Mail Returned to Sender") -> bytes:
    to = to or VERP.address(4711)
    return POSTFIX.format(to=to, sender=sender or to, subject=subject,
                          recipients=recipients).replace("\n", "\r\n").encode()


def test_a_postfix_hard_bounce_names_the_mail_the_recipient_and_the_reason():
    reading = read_bounce(postfix(), VERP)
    assert reading.problem is None and reading.notification_id == 4711
    [recipient] = reading.recipients
    assert recipient.hard and recipient.recipient == "p0@example.org"
    assert (recipient.action, recipient.status) == ("failed", "5.1.1")
    assert recipient.diagnostic == ("smtp; 550 5.1.1 <p0@example.org>: Recipient address "
                                    "rejected: User unknown in virtual mailbox table")


def test_a_postfix_delay_notice_is_understood_but_no_hard_bounce():
    reading = read_bounce(postfix(DELAYED, subject="Delayed Mail (still being retried)"), VERP)
    assert reading.problem is None and reading.notification_id == 4711
    [recipient] = reading.recipients
    assert not recipient.hard and (recipient.action, recipient.status) == ("delayed", "4.4.1")


def test_a_report_for_two_recipients_tells_them_apart():
    forwarded = USER_UNKNOWN.replace("rfc822;p0@", "rfc822;d0@").replace(
        "Final-Recipient: rfc822; p0@", "Final-Recipient: rfc822; deputy@mail.")
    reading = read_bounce(postfix(USER_UNKNOWN + "\n" + forwarded + "\n" + DELAYED), VERP)
    assert [(r.recipient, r.hard) for r in reading.recipients] == [
        ("p0@example.org", True), ("d0@example.org", True), ("p0@example.org", False)]


def test_a_queue_that_expired_with_a_4xx_status_is_not_a_hard_bounce():
    expired = DELAYED.replace("Action: delayed", "Action: failed").replace("4.4.1", "4.4.7")
    [recipient] = read_bounce(postfix(expired), VERP).recipients
    assert recipient.action == "failed" and not recipient.hard


def test_an_exim_bounce_delivered_without_delivery_headers_is_read_from_its_to():
    address = VERP.address(815)
    raw = f"""\
Return-path: <>
Envelope-to: {address}
From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: {address}
Subject: Mail delivery failed: returning message to sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary=1769941862-eximdsn-12

--1769941862-eximdsn-12
Content-type: text/plain; charset=us-ascii

This message was created automatically by mail delivery software.

--1769941862-eximdsn-12
Content-type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Action: failed
Final-Recipient: rfc822;h3@example.org
Status: 5.0.0
Remote-MTA: dns; mail.example.org
Diagnostic-Code: smtp; 550 mailbox unavailable

--1769941862-eximdsn-12
Content-type: message/rfc822

Subject: Einladung

--1769941862-eximdsn-12--
""".encode()
    reading = read_bounce(raw, VERP)
    assert reading.notification_id == 815
    [recipient] = reading.recipients
    assert recipient.hard and recipient.recipient == "h3@example.org"


def test_a_utf8_global_delivery_status_is_read_too():
    raw = postfix().replace(b"message/delivery-status", b"message/global-delivery-status")
    [recipient] = read_bounce(raw, VERP).recipients
    assert recipient.hard and recipient.recipient == "p0@example.org"


def test_a_bounce_with_a_forged_mac_is_recognised_as_forged():
    forged = VERP.address(4711)[:-len("@berichte.example.org") - 1] + "0@berichte.example.org"
    reading = read_bounce(postfix(to=forged), VERP)
    assert reading.notification_id is None and reading.problem.startswith("forged")


def test_a_bounce_to_the_bare_bounce_address_names_no_mail():
    reading = read_bounce(postfix(to="bounces@berichte.example.org"), VERP)
    assert reading.notification_id is None and "not addressed to a VERP" in reading.problem


@pytest.mark.parametrize("raw", [
    b"",
    b"\x00\xff\xfe garbage \x80\x81",
    b"From: someone@example.org\r\nSubject: Out of office\r\n\r\nIch bin im Urlaub.\r\n",
    b"Content-Type: multipart/report; report-type=disposition-notification; boundary=x\r\n\r\n"
    b"--x\r\nContent-Type: text/plain\r\n\r\nread\r\n--x--\r\n",
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n"
    b"--x\r\nContent-Type: text/plain\r\n\r\nno status part\r\n--x--\r\n",
])
def test_what_is_no_delivery_status_report_is_said_so_and_never_raises(raw):
    reading = read_bounce(raw, VERP)
    assert reading.notification_id is None and reading.problem


def test_the_report_parser_returns_none_for_a_plain_message():
    message = email.message_from_string("Subject: hello\n\nbody\n")
    assert parse_delivery_report(message) is None


# Settings -----------------------------------------------------------------------------------------

def _settings(monkeypatch, tmp_path, **env):
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("SECRET_KEY", SECRET)
    for name in ("BOUNCE_ADDRESS", "BOUNCE_MAILDIR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings.from_env()


def test_bounce_settings_are_read_and_unset_means_no_verp(monkeypatch, tmp_path):
    plain = _settings(monkeypatch, tmp_path)
    assert plain.bounce_address is None and plain.bounce_maildir is None
    verp = _settings(monkeypatch, tmp_path, BOUNCE_ADDRESS="bounces@berichte.example.org",
                     BOUNCE_MAILDIR=str(tmp_path / "bounces"))
    assert verp.bounce_address == "bounces@berichte.example.org"
    assert verp.bounce_maildir == tmp_path / "bounces"


@pytest.mark.parametrize("env,message", [
    ({"BOUNCE_ADDRESS": "bounces"}, "BOUNCE_ADDRESS must be a bare address"),
    ({"BOUNCE_ADDRESS": "Bounces <bounces@example.org>"}, "BOUNCE_ADDRESS must be a bare"),
    ({"BOUNCE_MAILDIR": "/var/mail/bounces"}, "BOUNCE_ADDRESS is not"),
])
def test_bounce_settings_that_cannot_work_are_refused_by_name(monkeypatch, tmp_path, env,
                                                              message):
    with pytest.raises(ConfigError, match=message):
        _settings(monkeypatch, tmp_path, **env)
