"""SQLAlchemy 2.0 typed models. Invariants live here as CHECK and UNIQUE constraints."""
from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum

from sqlalchemy import (JSON, Boolean, CheckConstraint, Date, DateTime, Enum, ForeignKey,
                        ForeignKeyConstraint, Index, Integer, String, Text, UniqueConstraint, text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from workflow.events import EventKind
from workflow.policy import Audience
from workflow.states import SubmissionState


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite keeps naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware UTC instant is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def by_value(enum_cls, name, checked=True):
    """Enums stored by value as text; ``checked`` adds a CHECK constraint listing the values."""
    return Enum(enum_cls, name=name, native_enum=False, create_constraint=checked, length=32,
                values_callable=lambda e: [m.value for m in e], validate_strings=True)


class PartnerKind(StrEnum):
    KOMMUNE = "kommune"
    KREIS = "kreis"
    BEHOERDE = "behoerde"
    POLIZEI = "polizei"
    JOBCENTER = "jobcenter"
    VERBAND = "verband"
    UNTERNEHMEN = "unternehmen"
    KOOPERATION = "kooperation"


PARTNER_KIND_LABELS = {
    PartnerKind.KOMMUNE: "Kommune", PartnerKind.KREIS: "Kreis", PartnerKind.BEHOERDE: "Behörde",
    PartnerKind.POLIZEI: "Polizei", PartnerKind.JOBCENTER: "Jobcenter",
    PartnerKind.VERBAND: "Verband", PartnerKind.UNTERNEHMEN: "Unternehmen",
    PartnerKind.KOOPERATION: "Kooperation",
}


class ContactRole(StrEnum):
    REPORTING = "reporting"
    DEPUTY = "deputy"
    HEAD = "head"


class CycleState(StrEnum):
    PLANNED = "planned"  # set up ahead: dates may change; no submissions or mails until it opens
    OPEN = "open"
    CLOSED = "closed"


class NotificationStatus(StrEnum):
    PLANNED = "planned"  # waiting for its due time; the sweep hands it over (see Handover)
    QUEUED = "queued"  # back in the outbox with a time (a retry, a deferral) or sent at once
    SENDING = "sending"  # claimed by a worker; SMTP in progress
    SENT = "sent"
    SKIPPED = "skipped"  # superseded by a later rung due at the same sweep
    CANCELLED = "cancelled"  # no longer needed (submitted, exempted, deadline moved)
    FAILED = "failed"  # refused for good by SMTP or out of attempts


OPEN_NOTIFICATION_STATES = (NotificationStatus.PLANNED, NotificationStatus.QUEUED,
                            NotificationStatus.SENDING)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict: JSON}


class Programme(Base):
    __tablename__ = "programme"
    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    policy: Mapped[dict] = mapped_column(JSON, default=dict)
    coordinator_emails: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Partner(Base):
    __tablename__ = "partner"
    __table_args__ = (
        UniqueConstraint("programme_id", "name"),
        CheckConstraint("employees IS NULL OR employees >= 0", name="employees_not_negative"),
        CheckConstraint("group_id IS NULL OR group_id <> id", name="not_own_group"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programme.id"), index=True)
    name: Mapped[str] = mapped_column(String(300))
    kind: Mapped[PartnerKind] = mapped_column(by_value(PartnerKind, "partner_kind"))
    joined_on: Mapped[date | None] = mapped_column(Date)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    employees: Mapped[int | None] = mapped_column(Integer)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("partner.id"), index=True)
    contacts: Mapped[list["Contact"]] = relationship(back_populates="partner",
                                                     cascade="all, delete-orphan")


class Contact(Base):
    __tablename__ = "contact"
    __table_args__ = (
        CheckConstraint("language IN ('de', 'en')", name="language_known"),
        UniqueConstraint("partner_id", "role", "email"),
        Index("ix_contact_bounced", "bounced_at", sqlite_where=text("bounced_at IS NOT NULL"),
              postgresql_where=text("bounced_at IS NOT NULL")),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partner.id"), index=True)
    name: Mapped[str] = mapped_column(String(300), default="")
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[ContactRole] = mapped_column(by_value(ContactRole, "contact_role"))
    language: Mapped[str] = mapped_column(String(2), default="de")
    # Set when the address was refused for good; the ladder then writes to the next contact.
    bounced_at: Mapped[datetime | None] = mapped_column()
    bounce_reason: Mapped[str | None] = mapped_column(String(500))
    partner: Mapped[Partner] = relationship(back_populates="contacts")


class Cycle(Base):
    __tablename__ = "cycle"
    __table_args__ = (
        UniqueConstraint("programme_id", "year"),
        CheckConstraint("due_on > opens_on", name="due_after_opening"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programme.id"))
    year: Mapped[int] = mapped_column(Integer)
    opens_on: Mapped[date] = mapped_column(Date)
    due_on: Mapped[date] = mapped_column(Date)
    state: Mapped[CycleState] = mapped_column(by_value(CycleState, "cycle_state"),
                                              default=CycleState.OPEN)
    # A coordinator stopped every reminder of the cycle (answers and notices still go).
    reminders_paused: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    programme: Mapped[Programme] = relationship()


class Submission(Base):
    __tablename__ = "submission"
    __table_args__ = (
        UniqueConstraint("cycle_id", "partner_id"),
        # The overview's counts read this index alone; the table's sorts walk the next two.
        Index("ix_submission_cycle_state", "cycle_id", "state", "escalation_level",
              "non_reporting", "due_on"),
        Index("ix_submission_cycle_level", "cycle_id", "escalation_level", "id"),
        Index("ix_submission_cycle_due", "cycle_id", "due_on", "id"),
        # What a ledger row's (submission, cycle) refers to.
        Index("ix_submission_id_cycle", "id", "cycle_id", unique=True),
        CheckConstraint("escalation_level BETWEEN 0 AND 9", name="escalation_level_range"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycle.id"))
    partner_id: Mapped[int] = mapped_column(ForeignKey("partner.id"), index=True)
    state: Mapped[SubmissionState] = mapped_column(by_value(SubmissionState, "submission_state"),
                                                   default=SubmissionState.INVITED)
    due_on: Mapped[date] = mapped_column(Date)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    non_reporting: Mapped[bool] = mapped_column(Boolean, default=False)
    answers: Mapped[dict | None] = mapped_column(JSON)
    template_id: Mapped[int | None] = mapped_column(ForeignKey("report_template.id"))
    # Reminders wait until this local date ("we will submit by ...").
    paused_until: Mapped[date | None] = mapped_column(Date)
    # A coordinator stopped this partner's reminders until they resume them.
    reminders_paused: Mapped[bool] = mapped_column(Boolean, default=False)
    # The coordinators' comments when they return a report: question id (or "_general") -> text.
    review_comments: Mapped[dict | None] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, default=0)
    submitted_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    cycle: Mapped[Cycle] = relationship()
    partner: Mapped[Partner] = relationship()
    template: Mapped[ReportTemplate | None] = relationship()


class Event(Base):
    """Append-only log; the timeline of a submission and the audit trail of every change."""

    __tablename__ = "event"
    __table_args__ = (Index("ix_event_submission", "submission_id", "id"),
                      Index("ix_event_cycle_at", "cycle_id", "at"),
                      Index("ix_event_cycle_kind", "cycle_id", "kind", "submission_id", "at"),
                      Index("ix_event_programme", "programme_id", "id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int | None] = mapped_column(ForeignKey("programme.id"))  # programme-wide
    cycle_id: Mapped[int | None] = mapped_column(ForeignKey("cycle.id"))
    submission_id: Mapped[int | None] = mapped_column(ForeignKey("submission.id"))
    kind: Mapped[EventKind] = mapped_column(by_value(EventKind, "event_kind", checked=False))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(200), default="system")
    payload: Mapped[dict | None] = mapped_column(JSON)


# Rows waiting for their due time, as a literal: a bound parameter would keep PostgreSQL's generic
# plan of a prepared statement from using the partial index on planned rows.
PLANNED_ROWS = text("notification.status = 'planned'")

# Ladder mails to a partner that left or are leaving: the minimum gap between two is measured
# from them (a partial index keeps them apart from the rows still planned or long cancelled).
LADDER_MAIL_OUT = ("needs_open_report AND audience <> 'coordinators' "
                   "AND status IN ('queued', 'sending', 'sent')")


class Notification(Base):
    """The ledger: one row per (submission, rung, deadline); its status is also the outbox."""

    __tablename__ = "notification"
    __table_args__ = (
        Index("ix_notification_planned_due", "due_at",
              sqlite_where=text("status = 'planned'"), postgresql_where=text("status = 'planned'")),
        Index("ix_notification_outbox", "not_before",
              sqlite_where=text("status IN ('queued', 'sending')"),
              postgresql_where=text("status IN ('queued', 'sending')")),
        Index("ix_notification_submission", "submission_id"),
        Index("ix_notification_ladder_out", "submission_id", "member_part_id",
              sqlite_where=text(LADDER_MAIL_OUT), postgresql_where=text(LADDER_MAIL_OUT)),
        Index("ix_notification_cycle_status", "cycle_id", "status", "rung"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        # A row about a submission belongs to that submission's cycle: one check per row
        # instead of two (one to the submission, one to the cycle) when a rung of 20,000 is
        # planned. Rows about the whole cycle (no submission) have their cycle checked by the
        # triggers of migration 0012, which also keep such a cycle from being deleted or
        # renumbered.
        ForeignKeyConstraint(["submission_id", "cycle_id"],
                             ["submission.id", "submission.cycle_id"],
                             name="fk_notification_submission_cycle"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column()
    submission_id: Mapped[int | None] = mapped_column()
    member_part_id: Mapped[int | None] = mapped_column(ForeignKey("member_part.id"))
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    rung: Mapped[str] = mapped_column(String(64))
    email: Mapped[str] = mapped_column(String(64))
    audience: Mapped[Audience] = mapped_column(by_value(Audience, "audience"))
    seq: Mapped[int] = mapped_column(Integer, default=0)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    flags_non_reporting: Mapped[bool] = mapped_column(Boolean, default=False)
    # Fixed when planned: a mail about an owed report (the ladder), not an answer or a notice.
    needs_open_report: Mapped[bool] = mapped_column(Boolean, default=False)
    due_at: Mapped[datetime] = mapped_column()
    status: Mapped[NotificationStatus] = mapped_column(
        by_value(NotificationStatus, "notification_status"), default=NotificationStatus.PLANNED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime | None] = mapped_column()
    dispatched_at: Mapped[datetime | None] = mapped_column()
    claimed_at: Mapped[datetime | None] = mapped_column()
    # The fencing token of the claim: only its holder may record the outcome.
    claim_token: Mapped[str | None] = mapped_column(String(32))
    takeovers: Mapped[int] = mapped_column(Integer, default=0)  # claims taken from dead workers
    refused: Mapped[dict | None] = mapped_column(JSON)  # recipients refused while others accepted
    message_id: Mapped[str | None] = mapped_column(String(300))
    sent_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    # The mail as it left: subject, text part with the personal link blanked out, recipients.
    sent_subject: Mapped[str | None] = mapped_column(String(300))
    sent_text: Mapped[str | None] = mapped_column(Text)
    sent_to: Mapped[list | None] = mapped_column(JSON)
    # Facts the mail needs that are fixed when it is queued (a reason, a proposed date).
    payload: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Handover(Base):
    """A planned ledger row the sweep found due and handed to the workers; it keeps its status
    until a worker claims it. Writing this narrow row instead of moving the ledger row spares the
    sweep an update of every due row with all the ledger's indexes (issue 8, P3). The relay hands
    it out again when the broker lost it; a row held at send time loses its hand-over and goes
    back to the sweep. No foreign key: the relay deletes hand-overs whose row is no longer
    planned, and checking one per row would cost the sweep what the table saves."""

    __tablename__ = "handover"
    notification_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    handed_at: Mapped[datetime] = mapped_column()


class Outbox(Base):
    """The outbox as a whole: paused while the mail server cannot be reached or refuses login."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(primary_key=True)  # one row, id 1
    paused_until: Mapped[datetime | None] = mapped_column()
    paused_since: Mapped[datetime | None] = mapped_column()
    failures: Mapped[int] = mapped_column(Integer, default=0)  # connection failures in a row
    reason: Mapped[str | None] = mapped_column(Text)


class ReportTemplate(Base):
    """A versioned report form of one programme and year; ``definition`` as in the template files."""

    __tablename__ = "report_template"
    __table_args__ = (UniqueConstraint("programme_id", "year", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programme.id"))
    year: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Attachment(Base):
    """An uploaded file, stored under a random name outside the web root."""

    __tablename__ = "attachment"
    __table_args__ = (CheckConstraint("size >= 0", name="size_not_negative"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submission.id"), index=True)
    question_id: Mapped[str] = mapped_column(String(100))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ExtensionStatus(StrEnum):
    PENDING = "pending"
    GRANTED = "granted"
    REFUSED = "refused"


class ExtensionRequest(Base):
    __tablename__ = "extension_request"
    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submission.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    proposed_due: Mapped[date] = mapped_column(Date)
    status: Mapped[ExtensionStatus] = mapped_column(
        by_value(ExtensionStatus, "extension_status"), default=ExtensionStatus.PENDING)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column()
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decision_comment: Mapped[str | None] = mapped_column(Text)


class MemberPart(Base):
    """A member's own part of a group partner's report (a city of the Städtekooperation)."""

    __tablename__ = "member_part"
    __table_args__ = (UniqueConstraint("submission_id", "partner_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submission.id"), index=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partner.id"))
    answers: Mapped[dict | None] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, default=0)
    completed_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime | None] = mapped_column()
    partner: Mapped[Partner] = relationship()


class AccessToken(Base):
    """A personal link: only the SHA-256 of the token is stored. Several may be valid at once."""

    __tablename__ = "access_token"
    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submission.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    notification_id: Mapped[int | None] = mapped_column(ForeignKey("notification.id"))
    # Set for a member's link: it opens that member's part only.
    member_part_id: Mapped[int | None] = mapped_column(ForeignKey("member_part.id"))


class Role(StrEnum):
    """What a signed-in person may do: admins also manage accounts; viewers only look."""

    ADMIN = "admin"
    COORDINATOR = "coordinator"
    VIEWER = "viewer"


class LinkPurpose(StrEnum):
    INVITE = "invite"  # set the first password (mailed, or printed by `users create`)
    RESET = "reset"  # set a new password (mailed on "forgot password")
    SIGN_IN = "sign_in"  # sign in at once; printed on the console by `reportcycles run` only


class UserAccount(Base):
    """A coordinator's account. No password hash until the person sets one through a link."""

    __tablename__ = "user_account"
    __table_args__ = (CheckConstraint("language IN ('de', 'en')", name="account_language_known"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # stored lower-case
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[Role] = mapped_column(by_value(Role, "account_role"))
    language: Mapped[str] = mapped_column(String(8), default="de")
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # Raised with each new password: sessions signed in before it end.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="system")
    password_set_at: Mapped[datetime | None] = mapped_column()
    last_sign_in_at: Mapped[datetime | None] = mapped_column()


class AccountLink(Base):
    """A single-use, short-lived link for an account: only the SHA-256 of its token is stored."""

    __tablename__ = "account_link"
    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    purpose: Mapped[LinkPurpose] = mapped_column(by_value(LinkPurpose, "link_purpose"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="system")
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()
    account: Mapped[UserAccount] = relationship()


class ApiToken(Base):
    """A token for the read-only JSON API, owned by an account: it reads what the account may
    read. Shown once when issued; only its SHA-256 is stored, and ``prefix`` names it in lists."""

    __tablename__ = "api_token"
    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(12))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
