"""Bounces that arrive later by mail: the envelope sender per mail (VERP) and recording a bounce.

With a bounce address set, every mail leaves with its own envelope sender,
``bounces+<notification id>-<mac>@domain``, so the non-delivery report a mail server sends back
days later names the ledger row it is about. The MAC (an HMAC of the id under the secret key)
keeps anyone who can write to the bounce address from marking contacts as bouncing.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from sqlalchemy import func, select

from workflow.delivery import EMAIL_ADDRESS
from workflow.events import EventKind
from workflow.models import Contact, Event, MemberPart, Notification, Partner, Submission
from workflow.uow import UnitOfWork

log = logging.getLogger(__name__)

MAC_LENGTH = 12  # hex digits: 48 bits, and the local part stays far below its 64 characters
HARD_STATUS = re.compile(r"^5\.\d{1,3}\.\d{1,3}$")


class VerpAddresses:
    """``bounces+<id>-<mac>@domain`` for a bounce address ``bounces@domain``."""

    def __init__(self, bounce_address: str, secret: str):
        local, at, domain = bounce_address.strip().rpartition("@")
        if not at or not local or not domain:
            raise ValueError(f"not an address: {bounce_address!r}")
        self.local, self.domain = local, domain.lower()
        self.key = secret.encode()
        self._ours = re.compile(re.escape(local.lower()) + r"\+(\d{1,18})-([0-9a-f]+)")

    def _mac(self, notification_id: int) -> str:
        return hmac.new(self.key, f"reportcycles-bounce:{notification_id}".encode(),
                        hashlib.sha256).hexdigest()[:MAC_LENGTH]

    def address(self, notification_id: int) -> str:
        return f"{self.local}+{notification_id}-{self._mac(notification_id)}@{self.domain}"

    def ours(self, address: str) -> bool:
        """Addressed to a VERP address of our bounce address (whether genuine or not)."""
        local, _, domain = _bare(address).rpartition("@")
        return domain == self.domain and self._ours.fullmatch(local) is not None

    def notification_id(self, address: str) -> int | None:
        """The ledger row a VERP address names; None unless it is ours and its MAC is right."""
        local, _, domain = _bare(address).rpartition("@")
        found = self._ours.fullmatch(local) if domain == self.domain else None
        if found is None:
            return None
        notification_id = int(found.group(1))
        if not hmac.compare_digest(found.group(2), self._mac(notification_id)):
            return None
        return notification_id


def _bare(address: str) -> str:
    return address.strip().strip("<>").strip().lower()


def return_path_for(bounce_address: str | None, secret: str
                    ) -> Callable[[Notification], str | None]:
    """The letterhead's envelope sender per mail: VERP with a bounce address, else None (From)."""
    if not bounce_address:
        return lambda notification: None
    verp = VerpAddresses(bounce_address, secret)
    return lambda notification: verp.address(notification.id)


def is_hard(status: str) -> bool:
    """A permanent failure (5.x.x); 4.x.x is a delay or a temporary failure."""
    return HARD_STATUS.match(status.strip()) is not None


class BounceResult(StrEnum):
    MARKED = "marked"  # one or more contacts are now bouncing
    ALREADY_BOUNCING = "already_bouncing"  # the same bounce again, or refused at RCPT before
    COORDINATOR = "coordinator"  # a coordinator notice bounced: an event only
    NO_SUCH_CONTACT = "no_such_contact"  # the address is none of the partner's contacts: an event
    RECORDED_BEFORE = "recorded_before"  # that event exists already (a bounce read again)
    NOT_HARD = "not_hard"  # a delay or temporary failure: nothing changes
    UNKNOWN_NOTIFICATION = "unknown_notification"  # a genuine address but no such ledger row


@dataclass
class BounceOutcome:
    notification_id: int
    result: BounceResult
    partner: str | None = None
    roles: list[str] = field(default_factory=list)  # of the contacts marked now

    @property
    def understood(self) -> bool:
        return self.result is not BounceResult.UNKNOWN_NOTIFICATION


def record_bounce(uow: UnitOfWork, notification_id: int, recipient: str, status: str,
                  diagnostic: str, now: datetime) -> BounceOutcome:
    """A mail server reported later that a mail could not be delivered to ``recipient``.

    A hard bounce marks the partner's contact with that address as bouncing (the ladder then
    writes to the next contact) and records an event beside it; for a coordinators' notice, or an
    address that is no contact, only the event. Reading the same bounce twice changes nothing.
    """
    notification = uow.session.get(Notification, notification_id)
    if notification is None:
        log.warning("a bounce names mail %s, which is not in the ledger", notification_id)
        return BounceOutcome(notification_id, BounceResult.UNKNOWN_NOTIFICATION)
    if not is_hard(status):
        return BounceOutcome(notification_id, BounceResult.NOT_HARD)
    address = _bare(recipient)
    reply = " ".join(f"{status} {diagnostic or ''}".split())
    partner = _partner_of(uow, notification)
    contacts = [] if partner is None else list(uow.session.scalars(
        select(Contact).where(Contact.partner_id == partner.id,
                              func.lower(Contact.email) == address).order_by(Contact.id)))
    outcome = BounceOutcome(notification_id, BounceResult.MARKED,
                            partner=partner.name if partner else None)
    redacted = EMAIL_ADDRESS.sub("<address>", reply)
    if contacts:
        fresh = [c for c in contacts if c.bounced_at is None]
        if not fresh:
            outcome.result = BounceResult.ALREADY_BOUNCING
            return outcome
        for contact in fresh:
            contact.bounced_at, contact.bounce_reason = now, reply[:500]
            _event(uow, notification, now, contact_id=contact.id, role=str(contact.role),
                   reply=reply[:200], status=status)
            outcome.roles.append(str(contact.role))
        log.warning("mail %s bounced: %s contact(s) of partner %s marked bouncing: %s",
                    notification_id, "/".join(outcome.roles), partner.id, redacted)
        return outcome
    # Nobody to mark: the coordinators' own address, or one the partner's server forwarded to.
    # The event then names the address, since no contact row can.
    outcome.result = (BounceResult.COORDINATOR if partner is None
                      else BounceResult.NO_SUCH_CONTACT)
    if _recorded_before(uow, notification, address):
        outcome.result = BounceResult.RECORDED_BEFORE
        return outcome
    _event(uow, notification, now, contact_id=None,
           role="coordinator" if partner is None else None, address=address,
           reply=reply[:200], status=status)
    if partner is None:
        log.warning("mail %s (%s) to the coordinators bounced: %s", notification_id,
                    notification.rung, redacted)
    else:
        log.warning("mail %s to partner %s bounced for an address that is none of its "
                    "contacts: %s", notification_id, partner.id, redacted)
    return outcome


def _partner_of(uow: UnitOfWork, notification: Notification) -> Partner | None:
    """Whose contacts the mail went to: a member city for its own part, else the submitter."""
    if notification.member_part_id is not None:
        part = uow.session.get(MemberPart, notification.member_part_id)
        return uow.session.get(Partner, part.partner_id)
    if notification.submission_id is not None:
        submission = uow.session.get(Submission, notification.submission_id)
        return uow.session.get(Partner, submission.partner_id)
    return None


def _event(uow: UnitOfWork, notification: Notification, now: datetime, **payload):
    uow.session.add(Event(cycle_id=notification.cycle_id,
                          submission_id=notification.submission_id,
                          kind=EventKind.CONTACT_BOUNCED, at=now, actor="bounce",
                          payload={**payload, "notification_id": notification.id,
                                   "rung": notification.rung, "via": "dsn"}))
    uow.session.flush()


def _recorded_before(uow: UnitOfWork, notification: Notification, address: str) -> bool:
    submission = (Event.submission_id.is_(None) if notification.submission_id is None
                  else Event.submission_id == notification.submission_id)
    earlier = uow.session.scalars(select(Event.payload).where(
        Event.kind == EventKind.CONTACT_BOUNCED, Event.cycle_id == notification.cycle_id,
        submission))
    return any(p and p.get("notification_id") == notification.id and p.get("address") == address
               for p in earlier)
