"""Every kind of event the log records, documented once.

Events are past tense. Each row is written in the same transaction as the change it describes; the
``state`` column of a submission is a projection of its events, and the events are the timeline.
"""
from __future__ import annotations

from enum import StrEnum


class EventKind(StrEnum):
    CYCLE_OPENED = "cycle_opened"  # a yearly cycle was opened; payload: opens_on, due_on, partners
    INVITED = "invited"  # a submission was created for a partner; its invitation is planned
    OPENED = "opened"  # a person at the partner opened the report (a human action, not a link click)
    DRAFT_SAVED = "draft_saved"  # the partner saved a draft
    SUBMITTED = "submitted"  # the partner submitted the report; reminders stop
    RETURNED = "returned"  # a coordinator returned the report for revision; payload: comment
    ACCEPTED = "accepted"  # a coordinator accepted the report
    EXEMPTED = "exempted"  # a coordinator exempted the partner from this cycle; payload: reason
    EXEMPTION_REVOKED = "exemption_revoked"  # the exemption was taken back; reminders resume
    EXTENDED = "extended"  # the submission's own deadline moved; payload: old_due, new_due
    ESCALATED = "escalated"  # the overdue ladder reached a new level; payload: level, rung
    NOTIFICATION_SENT = "notification_sent"  # a mail left over SMTP; payload: rung, message_id
    NOTIFICATION_SKIPPED = "notification_skipped"  # a due rung was superseded by a later one
    NOTIFICATION_CANCELLED = "notification_cancelled"  # send-time check found it no longer needed
    NOTIFICATION_FAILED = "notification_failed"  # refused for good, not composable, out of attempts
    NOTIFICATION_REQUEUED = "notification_requeued"  # a coordinator put a failed mail back
    CONTACT_BOUNCED = "contact_bounced"  # the server refused an address; payload: contact_id, reply
    OUTBOX_PAUSED = "outbox_paused"  # the mail server is unreachable or refused the login
    OUTBOX_RESUMED = "outbox_resumed"  # a mail got through again
    FLAGGED_NON_REPORTING = "flagged_non_reporting"  # the last rung of the ladder was reached
    ATTACHMENT_ADDED = "attachment_added"  # a file was uploaded; payload: question, size, type
    EXTENSION_REQUESTED = "extension_requested"  # the partner asked for time; payload: proposed
    EXTENSION_REFUSED = "extension_refused"  # a coordinator said no; payload: comment
    INTENT_DECLARED = "intent_declared"  # "we will submit by ..." or "we cannot report"
    MEMBER_PART_SAVED = "member_part_saved"  # a member of a group saved its part; payload: member
    MEMBER_PART_COMPLETED = "member_part_completed"  # a member declared its part finished
    COORDINATORS_CHANGED = "coordinators_changed"  # programme-wide; payload: old, new
    TEMPLATE_CARRIED_FORWARD = "template_carried_forward"  # payload: from_year, version
    REMINDERS_PAUSED = "reminders_paused"  # a coordinator stopped reminders (submission or cycle)
    REMINDERS_RESUMED = "reminders_resumed"  # a coordinator let them go again; the ladder catches up
    LINK_RESENT = "link_resent"  # a coordinator sent a fresh personal link; older links still work
    CONTACTS_CHANGED = "contacts_changed"  # a coordinator edited a partner's contacts; payload: diff
    API_TOKEN_ISSUED = "api_token_issued"  # an account got a token for the JSON API; payload: name
    API_TOKEN_REVOKED = "api_token_revoked"  # payload: name, prefix
    CONTACT_ERASED = "contact_erased"  # a contact's data was erased; history keeps a pseudonym
    RETENTION_APPLIED = "retention_applied"  # programme-wide: old send logs and links removed
    MEMBER_PART_REOPENED = "member_part_reopened"  # a finished member part was opened again
    CYCLE_PLANNED = "cycle_planned"  # a coordinator set up a cycle ahead; payload: year, dates
    CYCLE_CHANGED = "cycle_changed"  # the dates of a planned cycle changed; payload: old, new
    POLICY_CHANGED = "policy_changed"  # programme-wide: the ladder changed; payload: old, new
    TEMPLATE_LOADED = "template_loaded"  # programme-wide: a report form version; payload: year
    PARTNER_CREATED = "partner_created"  # programme-wide; payload: partner_id, name
    PARTNER_CHANGED = "partner_changed"  # programme-wide; payload: partner_id, changes (old, new)
    PARTNER_DEACTIVATED = "partner_deactivated"  # not invited to cycles that open from now on
    PARTNER_REACTIVATED = "partner_reactivated"  # invited again to cycles that open from now on
    PARTNERS_IMPORTED = "partners_imported"  # programme-wide: a CSV; payload: created, updated
