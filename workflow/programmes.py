"""The programme's coordinators: who is told of deadlines, requests and non-reporting partners."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from workflow.addresses import is_address
from workflow.errors import InvalidInput
from workflow.events import EventKind
from workflow.models import Event, Programme
from workflow.uow import UnitOfWork



@dataclass(frozen=True)
class Coordinators:
    emails: tuple[str, ...]
    source: str  # "programme", "programme (set at creation)" or "environment"
    changed_at: datetime | None = None
    changed_by: str | None = None


def coordinator_addresses(programme: Programme, fallback: tuple[str, ...]) -> list[str]:
    """Who gets coordinator mail: the programme's list, else the environment's default."""
    return list(programme.coordinator_emails or fallback)


def coordinators_of(uow: UnitOfWork, programme: Programme,
                    fallback: tuple[str, ...]) -> Coordinators:
    """The programme's own list; the environment's only while the programme has none."""
    if not programme.coordinator_emails:
        return Coordinators(tuple(fallback), "environment")
    change = uow.session.scalars(select(Event).where(
        Event.programme_id == programme.id, Event.kind == EventKind.COORDINATORS_CHANGED)
        .order_by(Event.id.desc()).limit(1)).first()
    if change is None:
        return Coordinators(tuple(programme.coordinator_emails), "programme (set at creation)")
    return Coordinators(tuple(programme.coordinator_emails), "programme", change.at, change.actor)


def set_coordinators(uow: UnitOfWork, programme: Programme, emails: list[str], *,
                     now: datetime, actor: str) -> tuple[str, ...]:
    """Replace the programme's coordinators; an event keeps the old and the new list."""
    cleaned = list(dict.fromkeys(e.strip() for e in emails if e.strip()))
    bad = [e for e in cleaned if not is_address(e)]
    if bad:
        raise InvalidInput("Ungültige E-Mail-Adresse: " + ", ".join(bad))
    if not cleaned:
        raise InvalidInput("Mindestens eine Adresse der Koordination angeben.")
    old = list(programme.coordinator_emails or [])
    if old != cleaned:
        programme.coordinator_emails = cleaned
        uow.session.add(Event(programme_id=programme.id, cycle_id=None,
                              kind=EventKind.COORDINATORS_CHANGED, at=now, actor=actor,
                              payload={"old": old, "new": cleaned}))
        uow.session.flush()
    return tuple(cleaned)
