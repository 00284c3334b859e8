"""Data care: what is stored about a contact, erasing a contact without breaking the history, and
the retention rule the scheduler applies (old send logs and personal links, contacts of partners
that left).

Erasing replaces the person's address and name with a pseudonym wherever the history mentions them
(events, copies of mails, refusals) and deletes the contact row: a cycle's timeline still reads
"mail sent to Kontakt 3f9a1c2e", its counts and states stay as they were.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String, and_, cast, delete, func, null, or_, select, update

from workflow.cycles import policy_of
from workflow.errors import InvalidInput, NotFound
from workflow.events import EventKind
from workflow.models import (AccessToken, Contact, ContactRole, Cycle, CycleState, Event,
                             Notification, Partner, Programme, Submission)
from workflow.uow import UnitOfWork

MIN_NAME_TO_SCRUB = 3  # a one- or two-letter "name" would scrub unrelated text


def _contact(uow: UnitOfWork, contact_id: int) -> Contact:
    contact = uow.session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"Kontakt {contact_id} gibt es nicht.")
    return contact


def _mentions(column, words: list[str]):
    """The column's text contains one of the words (in a JSON column also JSON-escaped)."""
    text = cast(column, String)
    forms = {form for word in words for form in (word, json.dumps(word)[1:-1])}
    return or_(*[text.contains(form, autoescape=True) for form in sorted(forms)])


def _words(contact: Contact) -> list[str]:
    words = [contact.email]
    if contact.name and len(contact.name.strip()) >= MIN_NAME_TO_SCRUB:
        words.append(contact.name.strip())
    return words


def _event_dict(event: Event) -> dict:
    return {"id": event.id, "kind": str(event.kind), "at": event.at.isoformat(),
            "actor": event.actor, "cycle_id": event.cycle_id,
            "submission_id": event.submission_id, "payload": event.payload}


def contact_data(uow: UnitOfWork, contact_id: int) -> dict:
    """Everything stored about one contact, for the person who asks (GDPR Art. 15)."""
    contact = _contact(uow, contact_id)
    session = uow.session
    words = _words(contact)
    events = [event for event in session.scalars(select(Event).where(or_(
        and_(Event.kind == EventKind.CONTACT_BOUNCED,
             cast(Event.payload, String).contains(f'"contact_id": {contact.id}')),
        _mentions(Event.payload, words))).order_by(Event.id))
        if (event.payload or {}).get("contact_id") == contact.id
        or _replace(event.payload, words, "") != event.payload]
    mails = session.scalars(select(Notification).where(or_(
        _mentions(Notification.sent_to, [contact.email]),
        _mentions(Notification.refused, [contact.email]))).order_by(Notification.id)).all()
    return {
        "contact": {"id": contact.id, "name": contact.name, "email": contact.email,
                    "role": contact.role.value, "language": contact.language,
                    "bounced_at": contact.bounced_at.isoformat() if contact.bounced_at else None,
                    "bounce_reason": contact.bounce_reason},
        "partner": {"id": contact.partner.id, "name": contact.partner.name},
        "mails": [{"id": m.id, "kind": m.email, "status": m.status.value,
                   "sent_at": m.sent_at.isoformat() if m.sent_at else None,
                   "subject": m.sent_subject, "to": m.sent_to, "text": m.sent_text,
                   "refused": m.refused} for m in mails],
        "events": [_event_dict(e) for e in events],
    }


def _replace(value, words: list[str], pseudonym: str):
    """``value`` (JSON: dict, list, str ...) with every word replaced by the pseudonym."""
    if isinstance(value, str):
        for word in words:
            value = value.replace(word, pseudonym)
        return value
    if isinstance(value, list):
        return [_replace(v, words, pseudonym) for v in value]
    if isinstance(value, dict):
        return {_replace(k, words, pseudonym): _replace(v, words, pseudonym)
                for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Erased:
    pseudonym: str
    partner_id: int
    events: int
    mails: int


def erase_contact(uow: UnitOfWork, contact_id: int, *, now: datetime, actor: str,
                  partner_left: bool = False) -> Erased:
    """Delete the contact; the history keeps a pseudonym where it named the person. The last
    reporting contact of an active partner stays until another is added (mails would have no
    addressee); a partner that left may lose all."""
    contact = _contact(uow, contact_id)
    session = uow.session
    partner = contact.partner
    if partner.active and not partner_left and contact.role is ContactRole.REPORTING:
        others = session.scalar(select(func.count()).select_from(Contact).where(
            Contact.partner_id == partner.id, Contact.role == ContactRole.REPORTING,
            Contact.id != contact.id))
        if not others:
            raise InvalidInput("Das ist der letzte berichtende Kontakt eines aktiven Partners: "
                               "bitte zuerst einen anderen eintragen oder den Partner "
                               "deaktivieren.")
    pseudonym = f"Kontakt {secrets.token_hex(4)}"
    words = sorted(_words(contact), key=len, reverse=True)
    events = session.scalars(select(Event).where(_mentions(Event.payload, words))).all()
    for event in events:
        if event.payload is not None:
            event.payload = _replace(event.payload, words, pseudonym)
    mails = session.scalars(select(Notification).where(or_(
        _mentions(Notification.sent_to, words), _mentions(Notification.sent_text, words),
        _mentions(Notification.refused, words), _mentions(Notification.last_error, words),
        _mentions(Notification.sent_subject, words)))).all()
    for mail in mails:
        for field in ("sent_to", "sent_text", "refused", "last_error", "sent_subject"):
            value = getattr(mail, field)
            if value is not None:  # None stays SQL NULL (set again, a JSON column writes 'null')
                setattr(mail, field, _replace(value, words, pseudonym))
    session.add(Event(programme_id=partner.programme_id, kind=EventKind.CONTACT_ERASED, at=now,
                      actor=actor, payload={"pseudonym": pseudonym, "partner_id": partner.id,
                                            "role": contact.role.value}))
    session.delete(contact)
    session.flush()
    return Erased(pseudonym, partner.id, len(events), len(mails))


def contact_data_json(uow: UnitOfWork, contact_id: int) -> str:
    return json.dumps(contact_data(uow, contact_id), ensure_ascii=False, indent=2)


# The retention rule ------------------------------------------------------------------------------

@dataclass(frozen=True)
class RetentionResult:
    programme: str
    mails_blanked: int
    links_deleted: int
    contacts_erased: int

    @property
    def changed(self) -> bool:
        return bool(self.mails_blanked or self.links_deleted or self.contacts_erased)


def apply_retention(uow: UnitOfWork, *, now: datetime, actor: str = "scheduler"
                    ) -> list[RetentionResult]:
    """Per programme: cycles older than its newest ``retention_cycles`` lose their send logs
    (copies, recipients, refusals, errors, facts of requests) and personal links; partners that
    left (inactive) and took part in none of the kept cycles lose their contacts. Idempotent."""
    results = []
    session = uow.session
    for programme in session.scalars(select(Programme).order_by(Programme.id)).all():
        keep = policy_of(programme).retention_cycles
        years = session.scalars(select(Cycle.id).where(
            Cycle.programme_id == programme.id, Cycle.state != CycleState.PLANNED)
            .order_by(Cycle.year.desc())).all()  # a cycle not yet open keeps nothing
        kept, old = years[:keep], years[keep:]
        blanked = deleted = erased = 0
        if old:
            blanked = session.execute(
                update(Notification)
                .where(Notification.cycle_id.in_(old), or_(
                    Notification.sent_text.isnot(None), Notification.sent_to.isnot(None),
                    Notification.sent_subject.isnot(None), Notification.refused.isnot(None),
                    Notification.last_error.isnot(None), Notification.payload.isnot(None)))
                .values(sent_text=None, sent_to=null(), sent_subject=None, refused=null(),
                        last_error=None, payload=null())
                .execution_options(synchronize_session=False)).rowcount
            deleted = session.execute(
                delete(AccessToken).where(AccessToken.submission_id.in_(
                    select(Submission.id).where(Submission.cycle_id.in_(old))))
                .execution_options(synchronize_session=False)).rowcount
        gone = select(Contact.id).join(Partner, Partner.id == Contact.partner_id).where(
            Partner.programme_id == programme.id, Partner.active.is_(False),
            ~Partner.id.in_(select(Submission.partner_id).where(Submission.cycle_id.in_(kept))),
            ~Partner.group_id.in_(select(Submission.partner_id).where(
                Submission.cycle_id.in_(kept))) | Partner.group_id.is_(None))
        for contact_id in session.scalars(gone).all():
            erase_contact(uow, contact_id, now=now, actor=actor, partner_left=True)
            erased += 1
        result = RetentionResult(programme.slug, blanked, deleted, erased)
        if result.changed:
            session.add(Event(programme_id=programme.id, kind=EventKind.RETENTION_APPLIED, at=now,
                              actor=actor, payload={"kept_cycles": keep,
                                                    "mails_blanked": blanked,
                                                    "links_deleted": deleted,
                                                    "contacts_erased": erased}))
        results.append(result)
    session.flush()
    return results
