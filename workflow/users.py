"""Coordinators' accounts: roles, passwords and single-use links to set one or to sign in.

No Flask here: the web app and the command line call these use cases in their own transaction.
A link's token is shown once (in a mail, or on the console) and only its SHA-256 is stored.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Row, bindparam, func, select, update

from workflow.addresses import is_address
from workflow.errors import DomainError, InvalidInput
from workflow.models import AccountLink, LinkPurpose, Role, UserAccount
from workflow.report_form import CONTROL_CHARACTERS
from workflow.uow import UnitOfWork

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # hashing a megabyte of "password" is work for nothing
LINK_LIFETIME = {
    LinkPurpose.INVITE: timedelta(hours=24),
    LinkPurpose.RESET: timedelta(hours=1),
    LinkPurpose.SIGN_IN: timedelta(hours=24),
}
# Where a link is opened, below BASE_URL (the web app serves this path).
LINK_PATH = "/login/link/{token}"
LANGUAGES = ("de", "en")


class PasswordHasher(Protocol):
    def hash(self, password: str) -> str: ...

    def verify(self, stored: str, password: str) -> bool: ...


class ScryptHasher:
    """werkzeug's scrypt (salted, memory-hard); the hash names its method and parameters."""

    def hash(self, password: str) -> str:
        from werkzeug.security import generate_password_hash
        return generate_password_hash(password, method="scrypt")

    def verify(self, stored: str, password: str) -> bool:
        from werkzeug.security import check_password_hash
        return check_password_hash(stored, password)


DEFAULT_HASHER = ScryptHasher()


class AccountExists(InvalidInput):
    def __init__(self, email: str):
        super().__init__(f"Ein Konto für {email} gibt es schon.")
        self.email = email


class InvalidEmail(InvalidInput):
    def __init__(self, email: str):
        super().__init__(f"Ungültige E-Mail-Adresse: {email!r}")


class UnknownRole(InvalidInput):
    def __init__(self, role: str):
        super().__init__(f"Unbekannte Rolle {role!r}: admin, coordinator oder viewer.")


class WeakPassword(InvalidInput):
    """``reason``: "short", "long" or "email" (the password is the account's address)."""

    def __init__(self, reason: str):
        super().__init__({
            "short": f"Das Passwort muss mindestens {MIN_PASSWORD_LENGTH} Zeichen lang sein.",
            "long": f"Das Passwort darf höchstens {MAX_PASSWORD_LENGTH} Zeichen lang sein.",
            "email": "Das Passwort darf nicht die E-Mail-Adresse sein.",
        }[reason])
        self.reason = reason


class LinkNotUsable(DomainError):
    """``reason``: "unknown", "used", "expired" or "inactive"."""

    def __init__(self, reason: str):
        super().__init__(f"Dieser Link ist nicht (mehr) gültig ({reason}).")
        self.reason = reason


@dataclass(frozen=True)
class AccountView:
    """An account as the adapters see it, detached from any session."""

    id: int
    email: str
    name: str
    role: Role
    language: str
    active: bool
    has_password: bool
    session_epoch: int
    created_at: datetime
    created_by: str
    last_sign_in_at: datetime | None

    @property
    def can_act(self) -> bool:
        return self.role in (Role.ADMIN, Role.COORDINATOR)

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


@dataclass(frozen=True)
class IssuedLink:
    token: str  # shown once; never stored
    purpose: LinkPurpose
    expires_at: datetime
    account: AccountView

    @property
    def path(self) -> str:
        return LINK_PATH.format(token=self.token)


def account_view(account: UserAccount | Row) -> AccountView:
    """From a UserAccount or a row of its columns."""
    return AccountView(id=account.id, email=account.email, name=account.name or "",
                       role=Role(account.role), language=account.language,
                       active=account.active, has_password=account.password_hash is not None,
                       session_epoch=account.session_epoch, created_at=account.created_at,
                       created_by=account.created_by, last_sign_in_at=account.last_sign_in_at)


def normalise_email(email: str) -> str:
    return (email or "").strip().lower()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_password_rules(password: str, email: str = "") -> None:
    """At least 12 characters, not absurdly long, not the address itself."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword("short")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword("long")
    if email and password.strip().lower() == normalise_email(email):
        raise WeakPassword("email")


def create_account(uow: UnitOfWork, email: str, role: str, *, name: str = "",
                   language: str = "de", now: datetime, actor: str) -> AccountView:
    """A new account without a password; an invitation link lets the person set one."""
    email = normalise_email(email)
    if not is_address(email):
        raise InvalidEmail(email)
    try:
        role = Role(role)
    except ValueError:
        raise UnknownRole(role) from None
    if find_account(uow, email) is not None:
        raise AccountExists(email)
    account = UserAccount(email=email, name=" ".join(CONTROL_CHARACTERS.sub("", name or "").split())[:200], role=role,
                          language=language if language in LANGUAGES else "de",
                          created_at=now, created_by=actor[:200])
    uow.session.add(account)
    uow.session.flush()
    return account_view(account)


def find_account(uow: UnitOfWork, email: str) -> AccountView | None:
    account = uow.session.scalars(select(UserAccount).where(
        UserAccount.email == normalise_email(email))).first()
    return account_view(account) if account else None


def get_account(uow: UnitOfWork, account_id: int) -> AccountView | None:
    """Read on every signed-in request: the columns alone, run as Core on the session's
    connection (the ORM's execution costs as much CPU again and adds nothing to a row)."""
    row = uow.session.connection().execute(_ACCOUNT, {"id": account_id}).first()
    return account_view(row) if row else None


_ACCOUNT = select(*(getattr(UserAccount, name) for name in (
    "id", "email", "name", "role", "language", "active", "password_hash", "session_epoch",
    "created_at", "created_by", "last_sign_in_at"))).where(UserAccount.id == bindparam("id"))


def list_accounts(uow: UnitOfWork) -> list[AccountView]:
    return [account_view(a) for a in
            uow.session.scalars(select(UserAccount).order_by(UserAccount.email))]


def issue_link(uow: UnitOfWork, account_id: int, purpose: LinkPurpose, *, now: datetime,
               actor: str) -> IssuedLink:
    """A new single-use link; older ones stay valid until used, expired or a password is set."""
    account = uow.session.get(UserAccount, account_id)
    if account is None or not account.active:
        raise LinkNotUsable("inactive")
    token = secrets.token_urlsafe(32)
    expires_at = now + LINK_LIFETIME[purpose]
    uow.session.add(AccountLink(account_id=account.id, purpose=purpose, token_hash=token_hash(token),
                                created_at=now, created_by=actor[:200], expires_at=expires_at))
    uow.session.flush()
    return IssuedLink(token, purpose, expires_at, account_view(account))


def _usable_link(uow: UnitOfWork, token: str, now: datetime) -> AccountLink:
    link = uow.session.scalars(select(AccountLink).where(
        AccountLink.token_hash == token_hash(token or ""))).first()
    if link is None:
        raise LinkNotUsable("unknown")
    if link.used_at is not None:
        raise LinkNotUsable("used")
    if link.expires_at <= now:
        raise LinkNotUsable("expired")
    if not link.account.active:
        raise LinkNotUsable("inactive")
    return link


def open_link(uow: UnitOfWork, token: str, *, now: datetime) -> tuple[LinkPurpose, AccountView]:
    """What a link is for and whose it is. Changes nothing: mail scanners open links too."""
    link = _usable_link(uow, token, now)
    return LinkPurpose(link.purpose), account_view(link.account)


def _consume(uow: UnitOfWork, link: AccountLink, now: datetime) -> None:
    # One UPDATE that only an unused link passes: of two requests racing with one link, the
    # second finds it used (PostgreSQL re-checks the row after the first commits).
    used = uow.session.execute(
        update(AccountLink).where(AccountLink.id == link.id, AccountLink.used_at.is_(None))
        .values(used_at=now).execution_options(synchronize_session=False))
    if used.rowcount != 1:
        raise LinkNotUsable("used")
    link.used_at = now


def sign_in_with_link(uow: UnitOfWork, token: str, *, now: datetime) -> AccountView:
    """Use a console sign-in link (only `reportcycles run` prints these): signed in at once."""
    link = _usable_link(uow, token, now)
    if link.purpose != LinkPurpose.SIGN_IN:
        raise LinkNotUsable("unknown")
    _consume(uow, link, now)
    link.account.last_sign_in_at = now
    uow.session.flush()
    return account_view(link.account)


def set_password_with_link(uow: UnitOfWork, token: str, password: str, *, now: datetime,
                           hasher: PasswordHasher = DEFAULT_HASHER) -> AccountView:
    """Use an invitation or reset link: the new password is set and every other open link of
    the account closes. A password the rules refuse leaves the link unused."""
    link = _usable_link(uow, token, now)
    if link.purpose == LinkPurpose.SIGN_IN:
        raise LinkNotUsable("unknown")
    check_password_rules(password, link.account.email)
    _consume(uow, link, now)
    _store_password(uow, link.account, password, now, hasher)
    link.account.last_sign_in_at = now
    uow.session.flush()
    return account_view(link.account)


def set_password(uow: UnitOfWork, account_id: int, password: str, *, now: datetime,
                 hasher: PasswordHasher = DEFAULT_HASHER) -> AccountView:
    """Set a password directly (tests, a future "change password" page)."""
    account = uow.session.get(UserAccount, account_id)
    check_password_rules(password, account.email)
    _store_password(uow, account, password, now, hasher)
    uow.session.flush()
    return account_view(account)


def _store_password(uow, account: UserAccount, password: str, now: datetime, hasher):
    account.password_hash = hasher.hash(password)
    account.password_set_at = now
    # Sessions signed in with the old password end; open links are of no use any more.
    account.session_epoch = (account.session_epoch or 0) + 1
    uow.session.execute(
        update(AccountLink).where(AccountLink.account_id == account.id,
                                  AccountLink.used_at.is_(None))
        .values(used_at=now).execution_options(synchronize_session=False))


_dummy_hashes: dict[int, str] = {}


def verify_password(uow: UnitOfWork, email: str, password: str, *, now: datetime,
                    hasher: PasswordHasher = DEFAULT_HASHER) -> AccountView | None:
    """The account if the password is right (and the account active), else None. An unknown
    address costs as much time as a known one, so the answer's timing names no account."""
    account = uow.session.scalars(select(UserAccount).where(
        UserAccount.email == normalise_email(email))).first()
    if account is None or account.password_hash is None or not password:
        dummy = _dummy_hashes.setdefault(id(hasher), hasher.hash(secrets.token_hex(8)))
        hasher.verify(dummy, password or "-")
        return None
    if not hasher.verify(account.password_hash, password) or not account.active:
        return None
    account.last_sign_in_at = now
    uow.session.flush()
    return account_view(account)


def ensure_demo_account(uow: UnitOfWork, email: str, *, now: datetime
                        ) -> tuple[AccountView | None, bool]:
    """For the embedded demo: an admin account with ``email`` when there is no account at all.
    Returns that address's account (None when other accounts exist but not it) and whether it
    was created now."""
    existing = find_account(uow, email)
    if existing is not None:
        return existing, False
    if uow.session.scalar(select(func.count()).select_from(UserAccount)):
        return None, False
    return create_account(uow, email, Role.ADMIN, name="Koordination (Demo)", now=now,
                          actor="demo"), True
