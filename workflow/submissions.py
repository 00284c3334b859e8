"""Use cases on one submission: the partner's and the coordinators' actions, and personal links."""
from __future__ import annotations

import hashlib
import secrets
from datetime import date, datetime, timedelta
from functools import lru_cache

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import joinedload

from workflow.cycles import plan_rungs_for_submission, policy_of
from workflow.errors import DomainError, InvalidInput, NotFound
from workflow.events import EventKind
from workflow.ledger import cancel_open_rungs, queue_immediate
from workflow.models import (AccessToken, Contact, ContactRole, Cycle, Event, MemberPart,
                             ReportTemplate, Submission, utcnow)
from workflow.policy import effective_deadline, send_instant
from workflow.programmes import coordinator_addresses
from workflow.states import SETTLED, Action, awaits_report, transition
from workflow.uow import UnitOfWork

ACTION_EVENTS = {
    Action.OPEN: EventKind.OPENED, Action.SAVE_DRAFT: EventKind.DRAFT_SAVED,
    Action.SUBMIT: EventKind.SUBMITTED, Action.RETURN: EventKind.RETURNED,
    Action.ACCEPT: EventKind.ACCEPTED, Action.EXEMPT: EventKind.EXEMPTED,
    Action.REVOKE_EXEMPTION: EventKind.EXEMPTION_REVOKED,
}


class LinkExpired(DomainError):
    def __init__(self, message: str, *, submission_id: int):
        super().__init__(message)
        self.submission_id = submission_id


def coordinators_for(uow: UnitOfWork, submission_id: int, fallback: tuple[str, ...]) -> list[str]:
    """Whom a partner asks about this submission (e.g. for a new link)."""
    return coordinator_addresses(load_submission(uow, submission_id).cycle.programme, fallback)


def load_submission(uow: UnitOfWork, submission_id: int, *, for_update: bool = False) -> Submission:
    """The submission; ``for_update`` locks its row until the transaction ends. A row this
    transaction has locked already is not asked for again (a use case and the state machine it
    calls both lock it)."""
    session = uow.session
    if for_update:
        transaction = session.get_transaction()
        if transaction is not None and _locked(uow).get(submission_id) is transaction:
            submission = session.get(Submission, submission_id)
            if submission is not None:
                return submission
    query = select(Submission).where(Submission.id == submission_id)
    if for_update:
        # Not FOR UPDATE: rows that refer to it (a worker's events and links) need not wait,
        # as a change that waits for a mail in flight (uow.MAIL_LOCKS) would wait on them.
        query = query.with_for_update(key_share=True)
    submission = session.scalars(query).first()
    if submission is None:
        raise NotFound("Diese Meldung gibt es nicht.")
    if for_update:
        _locked(uow)[submission_id] = session.get_transaction()
    return submission


def _locked(uow: UnitOfWork) -> dict:
    """The submissions whose rows this session has locked, with the transaction that holds it."""
    return uow.session.info.setdefault("locked_submissions", {})


# A submission's event as one Core statement: through the ORM's flush it cost a tenth of a saved
# draft's CPU (0.2 ms).
EVENT_ROW = insert(Event.__table__)


def record(uow: UnitOfWork, submission: Submission, kind: EventKind, now: datetime, actor: str,
           **payload):
    uow.session.flush()  # what came before it is written before it, as its id will say
    uow.session.execute(EVENT_ROW, {"cycle_id": submission.cycle_id,
                                    "submission_id": submission.id, "kind": kind, "at": now,
                                    "actor": actor, "payload": payload or None})


def apply_action(uow: UnitOfWork, submission_id: int, action: Action | str, *, now: datetime,
                 actor: str, answers: dict | None = None, **payload) -> Submission:
    """Move a submission through the state machine, with its event and its ledger consequences."""
    action = Action(action)
    submission = load_submission(uow, submission_id, for_update=True)
    before = submission.state
    submission.state = transition(before, action)
    submission.version += 1
    if answers is not None:
        submission.answers = answers
    record(uow, submission, ACTION_EVENTS[action], now, actor,
           **{"from": str(before), "to": str(submission.state), **payload})
    if submission.state in SETTLED:
        cancel_open_rungs(uow, submission.id, reason=str(submission.state))
    if action is Action.SUBMIT:
        submission.submitted_at = now
        queue_immediate(uow, submission, "receipt", now, occasion=f"v{submission.version}",
                        wall=utcnow())
    if action is Action.REVOKE_EXEMPTION:
        plan_rungs_for_submission(uow, submission, policy_of(submission.cycle.programme), after=now)
    uow.session.flush()
    return submission


def extend_deadline(uow: UnitOfWork, submission_id: int, new_due: date, *, now: datetime,
                    actor: str, reason: str = "") -> Submission:
    """Give one partner a later deadline; its ladder is planned anew from the new date."""
    submission = load_submission(uow, submission_id, for_update=True)
    if not awaits_report(submission.state):
        raise InvalidInput(f"Eine Meldung im Zustand '{submission.state}' braucht keine Verlängerung.")
    if new_due <= submission.due_on:
        raise InvalidInput(f"Die neue Frist ({new_due:%d.%m.%Y}) muss nach der bisherigen "
                           f"({submission.due_on:%d.%m.%Y}) liegen.")
    policy = policy_of(submission.cycle.programme)
    if send_instant(policy, effective_deadline(policy, new_due)) <= now:
        raise InvalidInput(f"Die neue Frist ({new_due:%d.%m.%Y}) liegt in der Vergangenheit.")
    old_due = submission.due_on
    cancel_open_rungs(uow, submission.id, reason="deadline extended")
    submission.due_on = new_due
    submission.escalation_level = 0
    submission.non_reporting = False
    submission.version += 1
    record(uow, submission, EventKind.EXTENDED, now, actor, old_due=old_due.isoformat(),
           new_due=new_due.isoformat(), reason=reason)
    uow.session.flush()
    plan_rungs_for_submission(uow, submission, policy, after=now)
    uow.session.flush()
    return submission


# Personal links ---------------------------------------------------------------------------------

def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_link_token(submission: Submission, policy, *, now: datetime,
                   notification_id: int | None = None,
                   member_part_id: int | None = None) -> tuple[str, dict]:
    """A fresh random token (256 bits) and the values of the ``access_token`` row that stores
    only its hash (not yet written)."""
    token = secrets.token_urlsafe(32)
    expires = send_instant(policy, effective_deadline(policy, submission.due_on)) \
        + timedelta(days=policy.link_grace_days)
    return token, {"submission_id": submission.id, "token_hash": hash_token(token),
                   "created_at": now, "expires_at": max(expires, now + timedelta(days=30)),
                   "notification_id": notification_id, "member_part_id": member_part_id}


def issue_link_token(uow: UnitOfWork, submission: Submission, *, notification_id: int | None,
                     now: datetime, member_part_id: int | None = None) -> str:
    """A new personal link for ``submission``, stored as a hash; older links stay valid."""
    token, row = new_link_token(submission, policy_of(submission.cycle.programme), now=now,
                                notification_id=notification_id, member_part_id=member_part_id)
    uow.session.add(AccessToken(**row))
    return token


def resolve_link(uow: UnitOfWork, token: str, *, now: datetime):
    """The submission a personal link opens, and the member part if it is a member's link."""
    submission, part, _ = open_link(uow, token, now=now)
    return submission, part


def open_link(uow: UnitOfWork, token: str, *, now: datetime, for_update: bool = False,
              with_template: bool = False, with_context: bool = True):
    """``resolve_link`` and the language of the reporting contact of the partner the link is for
    (None if it has none): in one query, since every partner page needs the partner, the cycle,
    its programme's policy and the page's language. ``for_update``: the submission's row is
    locked by the same query (as ``load_submission`` would lock it). ``with_template``: its
    report template comes along (for the form's pages). ``with_context``: the cycle, its
    programme and the partner come along too (every page shows them; a save does not)."""
    if not token or len(token) > 100:
        raise NotFound("Unbekannter Link.")
    row = uow.session.execute(_link_query(for_update, with_template, with_context),
                              {"token_hash": hash_token(token)}).first()
    if row is None:
        raise NotFound("Unbekannter Link.")
    if for_update:
        _locked(uow)[row.Submission.id] = uow.session.get_transaction()
    if row.expires_at < now:
        raise LinkExpired("Dieser Link ist abgelaufen.", submission_id=row.Submission.id)
    if not row.member_part_id:
        return row.Submission, None, row.language
    part = uow.session.get(MemberPart, row.member_part_id)
    return row.Submission, part, uow.session.scalars(_reporting_language(part.partner_id)).first()


@lru_cache(maxsize=None)
def _link_query(for_update: bool, with_template: bool, with_context: bool):
    """``open_link``'s statement, built once per variant: building it and its cache key took a
    sixth of a partner page's time in the database layer."""
    query = (select(AccessToken.expires_at, AccessToken.member_part_id, Submission,
                    _reporting_language(Submission.partner_id).scalar_subquery().label("language"))
             .join(Submission, Submission.id == AccessToken.submission_id)
             .where(AccessToken.token_hash == bindparam("token_hash")))
    if with_context:
        query = query.options(joinedload(Submission.cycle).joinedload(Cycle.programme),
                              joinedload(Submission.partner))
    if with_template:  # its definition only if this process has not parsed it yet
        query = query.options(joinedload(Submission.template).defer(ReportTemplate.definition))
    if for_update:  # fresh values under the lock, even for a row the session holds
        query = query.with_for_update(of=Submission, key_share=True).execution_options(
            populate_existing=True)
    return query


def _reporting_language(partner_id):
    return select(Contact.language).where(Contact.partner_id == partner_id,
                                          Contact.role == ContactRole.REPORTING).limit(1)


def submission_for_token(uow: UnitOfWork, token: str, *, now: datetime) -> Submission:
    return resolve_link(uow, token, now=now)[0]


def timeline(uow: UnitOfWork, submission_id: int) -> list[Event]:
    return list(uow.session.scalars(select(Event).where(Event.submission_id == submission_id)
                                    .order_by(Event.id)))
