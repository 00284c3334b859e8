"""Reading bounces from the Maildir the mail server delivers the bounce address into.

Only ``new/`` is read. A message is moved to ``cur/`` once it has been dealt with, so nothing is
read twice: marked seen (``:2,S``) when it was a delivery status report for one of our mails
(hard bounces recorded, delays ignored), left unseen and flagged (``:2,F``) when it could not be
understood – not a report, not addressed to a VERP address, or its MAC forged – so that a person
finds it in any mail client. Nothing is deleted. A message whose bounce cannot be recorded
because the database is away stays in ``new/`` for the next run.

Delivery status reports follow RFC 3464: ``multipart/report; report-type=delivery-status`` with
a ``message/delivery-status`` part holding one block per recipient (``Final-Recipient``,
``Action``, ``Status``, ``Diagnostic-Code``). ``Action: failed`` with a 5.x.x status is a hard
bounce; delays and 4.x.x are left to the sending server's own retries.
"""
from __future__ import annotations

import email
import fcntl
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from email.utils import getaddresses
from pathlib import Path

from sqlalchemy.exc import OperationalError

from infra.services import Services
from infra.settings import ConfigError
from workflow.bounces import BounceOutcome, VerpAddresses, is_hard, record_bounce
from workflow.delivery import EMAIL_ADDRESS
from workflow.models import utcnow
from workflow.uow import Database

log = logging.getLogger(__name__)

STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
# Where a delivered bounce names the address it was delivered to, most reliable first.
ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
SEEN, FLAGGED = "S", "F"


@dataclass(frozen=True)
class RecipientStatus:
    """One recipient's block of a delivery status report."""

    recipient: str  # Original-Recipient when given (a forwarded address), else Final-Recipient
    action: str
    status: str
    diagnostic: str

    @property
    def hard(self) -> bool:
        return self.action == "failed" and is_hard(self.status)


@dataclass
class Reading:
    """What one message in the bounce mailbox turned out to be."""

    notification_id: int | None = None
    recipients: list[RecipientStatus] = field(default_factory=list)
    problem: str | None = None  # why it cannot be used; then it is kept for a person


def _text(value) -> str:
    return " ".join(str(value or "").split())


def _address(field_value) -> str:
    """``rfc822; someone@example.org`` → ``someone@example.org``."""
    _, _, address = _text(field_value).partition(";")
    return address.strip().strip("<>").strip()


def _status_blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if part.get_content_type() == "message/delivery-status" and isinstance(payload, list):
        return payload  # the email package parsed the blocks already
    # message/global-delivery-status (RFC 6533), parsed as one message: blocks of header lines.
    text = (payload if isinstance(payload, str)
            else "".join(m.as_string() for m in payload if isinstance(m, Message)))
    blocks = re.split(r"\r?\n[ \t]*\r?\n", text.strip())
    return [email.message_from_string(block) for block in blocks if block.strip()]


def parse_delivery_report(message: Message) -> list[RecipientStatus] | None:
    """The recipients' blocks of an RFC 3464 report; None if the message is no such report."""
    if (message.get_content_type() != "multipart/report"
            or _text(message.get_param("report-type")).lower() != "delivery-status"):
        return None
    parts = [p for p in message.walk() if p.get_content_type() in (
        "message/delivery-status", "message/global-delivery-status")]
    if not parts:
        return None
    recipients = []
    for block in _status_blocks(parts[0]):
        final = _address(block.get("Final-Recipient"))
        if not final:
            continue  # the per-message block (Reporting-MTA, Arrival-Date …)
        found = STATUS.search(_text(block.get("Status")))
        recipients.append(RecipientStatus(
            recipient=_address(block.get("Original-Recipient")) or final,
            action=_text(block.get("Action")).lower(),
            status=found.group(1) if found else _text(block.get("Status")),
            diagnostic=_text(block.get("Diagnostic-Code"))[:1000]))
    return recipients or None


def envelope_addresses(message: Message) -> list[str]:
    """Addresses the bounce may have been delivered to: the delivery headers, then the original
    envelope sender a report names (Postfix's ``X-Postfix-Sender``)."""
    found = [address for name in ENVELOPE_HEADERS
             for _, address in getaddresses([_text(v) for v in message.get_all(name, [])])
             if address]
    for part in message.walk():
        if part.get_content_type() == "message/delivery-status":
            for block in _status_blocks(part):
                if block.get("X-Postfix-Sender"):
                    found.append(_address(block.get("X-Postfix-Sender")))
    return list(dict.fromkeys(found))


def read_bounce(raw: bytes, verp: VerpAddresses) -> Reading:
    """Which of our mails a bounce is about, and what happened to each recipient."""
    try:
        message = email.message_from_bytes(raw)
        recipients = parse_delivery_report(message)
        candidates = [a for a in envelope_addresses(message) if verp.ours(a)]
    except Exception as exc:  # whatever a stranger sends must not stop the others
        return Reading(problem=f"cannot be parsed: {exc!r}")
    if recipients is None:
        return Reading(problem="not a delivery status report (RFC 3464)")
    if not candidates:
        return Reading(recipients=recipients, problem="not addressed to a VERP address")
    ids = {verp.notification_id(a) for a in candidates} - {None}
    if not ids:
        return Reading(recipients=recipients,
                       problem="forged: the VERP address does not carry a valid MAC")
    if len(ids) > 1:
        return Reading(recipients=recipients, problem="names several mails")
    return Reading(notification_id=ids.pop(), recipients=recipients)


@dataclass
class FetchReport:
    bounces: list[BounceOutcome] = field(default_factory=list)  # hard bounces recorded
    ignored: list[str] = field(default_factory=list)  # reports without a hard bounce
    kept: list[tuple[str, str]] = field(default_factory=list)  # (file, why) kept for a person
    waiting: list[str] = field(default_factory=list)  # left in new/: the database was away
    missing: bool = False  # the Maildir does not exist (yet): nothing was ever delivered
    busy: bool = False  # another process is reading the mailbox right now


def fetch_bounces(database: Database, maildir: Path, verp: VerpAddresses,
                  now: datetime | None = None) -> FetchReport:
    """Read every new message of the bounce Maildir once; one transaction per bounce."""
    report = FetchReport()
    new, cur = Path(maildir) / "new", Path(maildir) / "cur"
    if not new.is_dir():
        report.missing = True
        return report
    lock = os.open(new, os.O_RDONLY)
    try:
        try:  # one reader at a time (scheduler and a CLI run): no bounce is read twice
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            report.busy = True
            return report
        cur.mkdir(exist_ok=True)
        for name in sorted(os.listdir(new)):
            if name.startswith("."):
                continue
            if not _one(database, new / name, cur, verp, now, report):
                break
    finally:
        os.close(lock)  # releases the lock
    return report


def _one(database: Database, path: Path, cur: Path, verp: VerpAddresses,
         now: datetime | None, report: FetchReport) -> bool:
    """Deal with one message; False when the database is away and the run should stop."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return True
    reading = read_bounce(raw, verp)
    if reading.problem:
        _keep(path, cur, reading.problem, report)
        return True
    hard = [r for r in reading.recipients if r.hard]
    if not hard:
        _move(path, cur, SEEN)
        report.ignored.append(path.name)
        log.info("bounce mailbox: %s is about mail %s but reports no hard bounce (%s): ignored",
                 path.name, reading.notification_id,
                 ", ".join(f"{r.action} {r.status}" for r in reading.recipients))
        return True
    try:
        with database.unit_of_work() as uow:
            outcomes = [record_bounce(uow, reading.notification_id, r.recipient, r.status,
                                      r.diagnostic, now or utcnow()) for r in hard]
            uow.commit()
    except OperationalError:
        log.exception("bounce mailbox: %s could not be recorded; it stays for the next run",
                      path.name)
        report.waiting.append(path.name)
        return False
    except Exception as exc:
        log.exception("bounce mailbox: recording %s failed", path.name)
        _keep(path, cur, f"recording failed: {EMAIL_ADDRESS.sub('<address>', repr(exc))}",
              report)
        return True
    if not all(o.understood for o in outcomes):
        _keep(path, cur, f"names mail {reading.notification_id}, which is not in the ledger",
              report)
        return True
    _move(path, cur, SEEN)
    report.bounces.extend(outcomes)
    return True


def _keep(path: Path, cur: Path, why: str, report: FetchReport):
    _move(path, cur, FLAGGED)
    report.kept.append((path.name, why))
    log.warning("bounce mailbox: %s not understood, kept unseen and flagged in %s: %s",
                path.name, cur, why)


def _move(path: Path, cur: Path, flags: str):
    """new/ → cur/ with Maildir flags, as a mail client marks a message it has read."""
    try:
        os.rename(path, cur / f"{path.name.partition(':')[0]}:2,{flags}")
    except FileNotFoundError:  # taken by a reader that ignored the lock: it dealt with it
        pass


def fetch_configured(services: Services) -> FetchReport:
    """The bounce Maildir and address of the settings (the scheduler's job and the CLI)."""
    settings = services.settings
    if settings.bounce_maildir is None or not settings.bounce_address:
        raise ConfigError("reading bounces needs BOUNCE_ADDRESS (the envelope sender mails "
                          "leave with) and BOUNCE_MAILDIR (where the mail server delivers it)")
    report = fetch_bounces(services.database, settings.bounce_maildir,
                           VerpAddresses(settings.bounce_address, settings.secret_key))
    if report.missing:
        log.info("bounce mailbox %s does not exist yet: no bounce has arrived",
                 settings.bounce_maildir)
    elif report.bounces or report.kept:
        log.info("bounce mailbox: %d bounces recorded, %d ignored, %d kept for a person",
                 len(report.bounces), len(report.ignored), len(report.kept))
    return report
