"""Tokens for the read-only JSON API: issued by a signed-in person for their own account, shown
once, stored as SHA-256, revocable. A token reads what its account may read, as long as the
account is active."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from workflow.errors import InvalidInput, NotFound
from workflow.events import EventKind
from workflow.models import ApiToken, Event, UserAccount
from workflow.users import AccountView, account_view, token_hash
from workflow.uow import UnitOfWork

TOKEN_PREFIX = "rc_"
MAX_NAME_LENGTH = 100
USE_RECORDED_EVERY = timedelta(minutes=5)  # "last used" without a write per request


@dataclass(frozen=True)
class TokenView:
    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class IssuedToken:
    token: str  # shown once; never stored
    view: TokenView


def _token_view(row: ApiToken) -> TokenView:
    return TokenView(row.id, row.name, row.prefix, row.created_at, row.last_used_at,
                     row.revoked_at)


def _event(uow: UnitOfWork, kind: EventKind, row: ApiToken, now: datetime, actor: str):
    uow.session.add(Event(kind=kind, at=now, actor=actor[:200],
                          payload={"name": row.name, "prefix": row.prefix,
                                   "account_id": row.account_id}))


def issue_token(uow: UnitOfWork, account_id: int, name: str, *, now: datetime,
                actor: str) -> IssuedToken:
    name = " ".join(name.split())
    if not name:
        raise InvalidInput("Bitte geben Sie dem Token einen Namen (wofür es gebraucht wird).")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"Der Name darf höchstens {MAX_NAME_LENGTH} Zeichen lang sein.")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(account_id=account_id, name=name, prefix=token[:10],
                   token_hash=token_hash(token), created_at=now)
    uow.session.add(row)
    uow.session.flush()
    _event(uow, EventKind.API_TOKEN_ISSUED, row, now, actor)
    return IssuedToken(token, _token_view(row))


def tokens_of(uow: UnitOfWork, account_id: int) -> list[TokenView]:
    return [_token_view(row) for row in uow.session.scalars(
        select(ApiToken).where(ApiToken.account_id == account_id).order_by(ApiToken.id.desc()))]


def revoke_token(uow: UnitOfWork, account_id: int, token_id: int, *, now: datetime,
                 actor: str) -> TokenView:
    """Only one's own token; revoking twice keeps the first time."""
    row = uow.session.scalar(select(ApiToken).where(ApiToken.id == token_id,
                                                    ApiToken.account_id == account_id))
    if row is None:
        raise NotFound("Dieses Token gibt es nicht.")
    if row.revoked_at is None:
        row.revoked_at = now
        _event(uow, EventKind.API_TOKEN_REVOKED, row, now, actor)
    return _token_view(row)


def account_for_token(uow: UnitOfWork, token: str, *, now: datetime) -> AccountView | None:
    """The active account behind a valid, unrevoked token, or None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    found = uow.session.execute(
        select(ApiToken, UserAccount).join(UserAccount, UserAccount.id == ApiToken.account_id)
        .where(ApiToken.token_hash == token_hash(token))).first()
    if found is None:
        return None
    row, account = found
    if row.revoked_at is not None or not account.active:
        return None
    if row.last_used_at is None or now - row.last_used_at > USE_RECORDED_EVERY:
        uow.session.execute(update(ApiToken).where(ApiToken.id == row.id)
                            .values(last_used_at=now))
    return account_view(account)
