"""Names of states, kinds, rungs, audiences and events on the coordinators' pages, translated
once per language and process (a page of 50 rows would otherwise translate them on every render)."""
from __future__ import annotations

from flask_babel import get_locale, get_translations
from flask_babel import gettext as _
from jinja2 import pass_context, pass_eval_context
from markupsafe import Markup

from infra.mail import format_date, format_datetime

_translated: dict[str, dict[str, dict[str, str]]] = {}


def page_gettext() -> dict:
    """``gettext`` and ``ngettext`` for one page, bound to its catalogue once (a context
    processor): Flask-Babel's own look the catalogue up through the request context on every
    call, and the partner table makes 150 of them. They behave like Jinja's new-style ones:
    the result is a format string, marked safe under autoescaping, whose variables are escaped."""
    translations = get_translations()

    @pass_eval_context
    def gettext(eval_ctx, string: str, /, **variables):  # any variable name, as in Jinja
        text = translations.ugettext(string)
        return (Markup(text) if eval_ctx.autoescape else text) % variables

    @pass_eval_context
    def ngettext(eval_ctx, singular: str, plural: str, num: int, /, **variables):
        variables.setdefault("num", num)
        text = translations.ungettext(singular, plural, num)
        return (Markup(text) if eval_ctx.autoescape else text) % variables

    return {"gettext": gettext, "ngettext": ngettext, "page_language": str(get_locale() or "de")}


def _language(context) -> str:
    """The page's language as the context processor found it (a macro imported without
    context has not got it: then asked again)."""
    return context.get("page_language") or str(get_locale() or "de")


@pass_context
def page_date(context, day) -> str:
    """``|fdate``: a date in the page's language."""
    return format_date(day, _language(context)) if day else ""


@pass_context
def page_datetime(context, moment) -> str:
    """``|local_datetime``: a datetime already in local time, in the page's language."""
    return format_datetime(moment, _language(context)) if moment else ""


def partner_labels() -> dict[str, dict[str, str]]:
    """The names in the page's language, by group: state_names, kind_names, rung_names …"""
    language = str(get_locale() or "de")
    if language not in _translated:
        _translated[language] = _names()
    return _translated[language]


def _names() -> dict[str, dict[str, str]]:
    return {
        "state_names": {
            "invited": _("eingeladen"),
            "opened": _("geöffnet"),
            "draft": _("Entwurf"),
            "submitted": _("eingereicht"),
            "returned": _("zurückgegeben"),
            "accepted": _("angenommen"),
            "exempted": _("befreit"),
        },
        "kind_names": {
            "kommune": _("Kommune"),
            "kreis": _("Kreis"),
            "behoerde": _("Behörde"),
            "polizei": _("Polizei"),
            "jobcenter": _("Jobcenter"),
            "verband": _("Verband"),
            "unternehmen": _("Unternehmen"),
            "kooperation": _("Kooperation"),
        },
        "role_names": {
            "reporting": _("Berichtskontakt"),
            "deputy": _("Vertretung"),
            "head": _("Leitung"),
        },
        "audience_names": {
            "contact": _("Berichtskontakt"),
            "contact_and_deputy": _("Berichtskontakt und Vertretung"),
            "head": _("Leitung"),
            "coordinators": _("Koordinierungsstelle"),
        },
        "mail_status_names": {
            "planned": _("geplant"),
            "queued": _("in Versand"),
            "sending": _("wird versendet"),
            "sent": _("versendet"),
            "skipped": _("übersprungen"),
            "cancelled": _("entfallen"),
            "failed": _("fehlgeschlagen"),
        },
        "rung_names": {
            "invitation": _("Einladung"),
            "member_invitation": _("Einladung (Mitglied)"),
            "reminder": _("Erinnerung"),
            "overdue_reminder": _("Erinnerung nach Fristablauf"),
            "escalation_head": _("Schreiben an die Leitung"),
            "non_reporting_notice": _("Hinweis: kein Bericht"),
            "deadline_notice": _("Fristhinweis"),
            "receipt": _("Eingangsbestätigung"),
            "returned": _("Rückgabe zur Überarbeitung"),
            "extension_request": _("Fristverlängerungsantrag"),
            "extension_decision": _("Entscheidung über Fristverlängerung"),
            "intent_notice": _("Rückmeldung des Partners"),
            "link_resent": _("Neuer Link"),
        },
        "event_names": {
            "invited": _("Eingeladen"),
            "opened": _("Bericht begonnen"),
            "draft_saved": _("Entwurf gespeichert"),
            "submitted": _("Bericht eingereicht"),
            "returned": _("Zur Überarbeitung zurückgegeben"),
            "accepted": _("Bericht angenommen"),
            "exempted": _("Für dieses Jahr befreit"),
            "exemption_revoked": _("Befreiung aufgehoben"),
            "extended": _("Frist verlängert"),
            "escalated": _("Eskaliert"),
            "notification_skipped": _("E-Mail übersprungen"),
            "notification_requeued": _("E-Mail erneut in den Versand gegeben"),
            "contact_bounced": _("Adresse nicht zustellbar"),
            "flagged_non_reporting": _("Als säumig markiert"),
            "attachment_added": _("Datei hochgeladen"),
            "extension_requested": _("Fristverlängerung beantragt"),
            "extension_refused": _("Fristverlängerung abgelehnt"),
            "intent_declared": _("Rückmeldung des Partners"),
            "member_part_saved": _("Teil eines Mitglieds gespeichert"),
            "member_part_completed": _("Teil eines Mitglieds fertig gemeldet"),
            "member_part_reopened": _("Teil eines Mitglieds wieder geöffnet"),
            "reminders_paused": _("Erinnerungen pausiert"),
            "reminders_resumed": _("Erinnerungen fortgesetzt"),
            "link_resent": _("Neuer Link verschickt"),
            "contacts_changed": _("Kontakte geändert"),
        },
        "detail_names": {
            "reason": _("Begründung"),
            "comment": _("Kommentar"),
            "old_due": _("bisherige Frist"),
            "new_due": _("neue Frist"),
            "proposed_due": _("vorgeschlagene Frist"),
            "until": _("zugesagt bis"),
            "intent": _("Rückmeldung"),
            "level": _("Stufe"),
            "member": _("Mitglied"),
            "reply": _("Antwort des Mailservers"),
            "error": _("Fehler"),
        },
        "intent_names": {
            "will_submit_by": _("reicht bis zum genannten Datum ein"),
            "cannot_report": _("kann in diesem Jahr nicht berichten"),
        },
        "progress_names": {
            "done": _("fertig"),
            "draft": _("in Arbeit"),
            "open": _("nicht begonnen"),
        },
    }
