"""Markup typed into names, answers, comments and reasons shows as text everywhere: in every
partner and dashboard page, and in the text and HTML part of every kind of mail, as the real
pipeline sends them to a real SMTP server."""
from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path

import pytest
from markupsafe import escape
from sqlalchemy import select

from tests.integration.conftest import berlin
from tests.integration.test_mail_html import at, run_sweep
from tests.support.report import VALID_ANSWERS, load_shipped_template
from tests.support.sign_in import csrf_token, signed_in_client
from web import create_app
from workflow.coordination import resend_link
from workflow.cycles import get_programme, open_cycle
from workflow.digest import plan_digests
from workflow.models import (ExtensionRequest, Notification, Partner, Submission,
                             SubmissionState, utcnow)
from workflow.partners import ensure_programme, import_partners
from workflow.reporting import save_draft, submit_report
from workflow.requests import decide_extension, declare_intent, request_extension
from workflow.review import return_report
from workflow.submissions import issue_link_token, load_submission

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "email"
OPENS, DUE = date(2027, 2, 1), date(2027, 4, 30)
# Each piece of markup once per place it can be typed in, so a finding names its source; each
# opening tag (up to its ">") is found in no template.
NAME = '<script>alert(1)</script> & "Stadt"'
CONTACT = '<img src=x onerror=alert(2)> Kontakt'
HEAD = '<b onmouseover="alert(3)">Leitung</b>'
ANSWER = '<i class="evil">Plan</i> <script>alert(4)</script> & mehr'
COMMENT = '<a href="javascript:alert(5)">Bitte prüfen</a> & ergänzen'
FIELD_COMMENT = '<u id="evil">Zahl</u> < 50 %'
REASON = '<svg onload=alert(6)> Personalwechsel'
DECISION = '<em title="evil">Gern</em> <script>alert(7)</script>'
MARKUP = [NAME, CONTACT, HEAD, ANSWER, COMMENT, FIELD_COMMENT, REASON, DECISION]
GROUP = f"{NAME} Städtekooperation"


def partners_csv() -> str:
    """One partner per path through the year, every name and contact name with markup."""
    out = io.StringIO()
    rows = csv.writer(out)
    rows.writerow(["name", "kind", "contact_name", "contact_email", "deputy_email", "head_name",
                   "head_email", "language", "joined_on", "group"])
    paths = ["submits", "extension granted", "extension refused", "cannot report",
             "will submit later", "gets a new link", "does nothing"]
    for n, path in enumerate(paths):
        rows.writerow([f"{NAME} {path}", "Kommune", f"{CONTACT} {n}", f"p{n}@example.org",
                       f"d{n}@example.org", f"{HEAD} {n}", f"h{n}@example.org",
                       "en" if n % 2 else "de", "2015-01-01", ""])
    rows.writerow([GROUP, "Kooperation", f"{CONTACT} Gruppe", "g@example.org", "", "", "",
                   "de", "2013-07-09", ""])
    rows.writerow([f"{NAME} Mitglied", "Kommune", f"{CONTACT} Mitglied", "m@example.org", "", "",
                   "", "en", "2013-07-09", GROUP])
    return out.getvalue()


def submission_of(services, name: str) -> int:
    with services.database.unit_of_work() as uow:
        return uow.session.scalar(select(Submission.id).join(Partner).where(
            Partner.name == f"{NAME} {name}"))


def submit(uow, submission_id, *, now):
    version = load_submission(uow, submission_id).version
    save_draft(uow, submission_id, {**VALID_ANSWERS, "plans_next_year": ANSWER,
                                    "reporting_person": ANSWER},
               expected_version=version, now=now, actor="partner")
    return submit_report(uow, submission_id, expected_version=version + 1, now=now,
                         actor="partner")


def request_extension_id(uow, submission_id, **kwargs) -> int:
    return request_extension(uow, submission_id, **kwargs).id


def rehearse_a_year(services) -> dict:
    """Every kind of mail, each about partners, contacts and words with markup."""
    with services.database.unit_of_work() as uow:
        programme = ensure_programme(uow, coordinator_emails=("koordination@example.org",))
        import_partners(uow, programme, partners_csv())
        load_shipped_template(uow, programme)
        uow.commit()
    with services.database.unit_of_work() as uow:
        cycle_id = open_cycle(uow, get_programme(uow), 2027, now=berlin(OPENS, 7, 0),
                              opens_on=OPENS, due_on=DUE).id
        uow.commit()
    run_sweep(services, berlin(OPENS))  # invitations, the member's own included
    submitted = submission_of(services, "submits")
    at(services, berlin(date(2027, 3, 1), 9), submit, submitted)
    at(services, berlin(date(2027, 3, 2), 9), return_report, submitted, actor="koordination",
       comments={"_general": COMMENT, "staff_total": FIELD_COMMENT})
    requests = {}
    for name in ("extension granted", "extension refused"):
        requests[name] = at(services, berlin(date(2027, 3, 3), 9), request_extension_id,
                            submission_of(services, name), actor="partner",
                            proposed_due=date(2027, 6, 30), reason=REASON)
    at(services, berlin(date(2027, 3, 4), 9), decide_extension, requests["extension granted"],
       grant=True, actor="koordination", comment=DECISION)
    at(services, berlin(date(2027, 3, 4), 9), decide_extension, requests["extension refused"],
       grant=False, actor="koordination", comment=DECISION)
    at(services, berlin(date(2027, 3, 5), 9), declare_intent,
       submission_of(services, "cannot report"), actor="partner", intent="cannot_report",
       reason=REASON)
    at(services, berlin(date(2027, 3, 5), 9), declare_intent,
       submission_of(services, "will submit later"), actor="partner",
       intent="will_submit_by", until=date(2027, 5, 20), reason=REASON)
    at(services, berlin(date(2027, 3, 5), 9), resend_link,
       submission_of(services, "gets a new link"), actor="koordination")
    with services.database.unit_of_work() as uow:  # the coordinators' digest of March 5th
        plan_digests(uow, berlin(date(2027, 3, 6), 7, 5))
        uow.commit()
    run_sweep(services, berlin(date(2027, 3, 6), 7, 5))
    for day in (date(2027, 3, 19), date(2027, 4, 12), date(2027, 5, 7), date(2027, 5, 18),
                date(2027, 6, 2), date(2027, 6, 16)):
        run_sweep(services, berlin(day))
    # Pending at the end, for the dashboard: one more request, with markup in its reason.
    with services.database.unit_of_work() as uow:
        late = uow.session.scalars(select(Submission).join(Partner).where(
            Partner.name == f"{NAME} does nothing")).one()
        late.due_on = date(2027, 6, 1)
        pending = request_extension(uow, late.id, reason=REASON, proposed_due=date(2027, 8, 1),
                                    now=berlin(date(2027, 5, 20)), actor="partner").id
        uow.commit()
    return {"cycle_id": cycle_id, "submitted": submitted, "pending_request": pending,
            "requests": requests}


def shown_as_text(html: str, where: str) -> list[str]:
    """Problems: a piece of markup that arrived as markup."""
    return [f"{where}: {raw!r} arrived as markup" for raw in MARKUP
            if raw.split(">")[0] + ">" in html]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_mail_kind_shows_markup_as_text_in_both_parts(services, smtp):
    _, handler = smtp
    rehearse_a_year(services)
    with services.database.unit_of_work() as uow:
        kind_of = dict(uow.session.execute(select(Notification.message_id, Notification.email)
                                           .where(Notification.message_id.is_not(None))).all())
    problems, kinds, shown = [], set(), {"html": set(), "text": set()}
    for received in handler.messages:
        message = received["message"]
        kind = kind_of[message["Message-ID"]]
        kinds.add(kind)
        html = message.get_body(("html",)).get_content()
        text = message.get_body(("plain",)).get_content()
        problems += shown_as_text(html, f"{kind} HTML")
        for raw in MARKUP:
            if str(escape(raw)) in html:
                shown["html"].add(raw)
            if raw in text:
                shown["text"].add(raw)
            # Text is text: an entity there would show as "&lt;" to the reader.
            if str(escape(raw)) in text or str(escape(raw)) in str(message["Subject"]):
                problems.append(f"{kind} text or subject: {raw!r} escaped twice")
    expected = {p.name for p in TEMPLATES.iterdir() if p.is_dir() and any(p.glob("*/body.html"))}
    assert kinds == expected, f"kinds never sent: {sorted(expected - kinds)}"
    assert not problems, "\n".join(problems)
    # Each piece of markup really reached a mail (as text), so the checks above can fail.
    assert shown["html"] == set(MARKUP) - {FIELD_COMMENT} or shown["html"] == set(MARKUP), \
        f"never shown in an HTML part: {set(MARKUP) - shown['html']}"
    assert shown["text"] >= shown["html"], f"never in a text part: {shown['html'] - shown['text']}"


def test_every_page_shows_markup_as_text(services, smtp):
    """The partner's pages and every dashboard page that shows these names and words."""
    data = rehearse_a_year(services)
    app = create_app(settings=services.settings, services=services)
    with services.database.unit_of_work() as uow:
        submitted = load_submission(uow, data["submitted"])
        token = issue_link_token(uow, submitted, notification_id=None, now=utcnow())
        partner_id, cycle_id = submitted.partner_id, data["cycle_id"]
        group_id = uow.session.scalar(select(Submission.id).join(Partner).where(
            Partner.name == GROUP))
        mail_id = uow.session.scalar(select(Notification.id).where(
            Notification.submission_id == submitted.id, Notification.email == "returned"))
        assert uow.session.get(ExtensionRequest, data["pending_request"]) is not None
        assert submitted.state == SubmissionState.RETURNED
        uow.commit()

    partner = app.test_client()
    pages = {f"partner {path}": partner.get(f"/r/{token}{path}")
             for path in ("", "/form", "/extension", "/intent")}
    csrf = csrf_token(pages["partner /form"].get_data(as_text=True))
    pages["partner extension refused"] = partner.post(
        f"/r/{token}/extension", data={"csrf_token": csrf, "proposed_due": "nie",
                                       "reason": REASON})
    pages["partner form refused"] = partner.post(
        f"/r/{token}/form", data={"csrf_token": csrf, "version": "0", "action": "save",
                                  "plans_next_year": ANSWER})

    coordinator = signed_in_client(app, services, "koordination@example.org", "coordinator")
    for path in ("/", f"/cycles/{cycle_id}", f"/cycles/{cycle_id}/live",
                 f"/cycles/{cycle_id}/partners", f"/cycles/{cycle_id}/partners?q=script",
                 f"/cycles/{cycle_id}/partners?q={NAME}", f"/submissions/{data['submitted']}",
                 f"/submissions/{group_id}", f"/mails/{mail_id}",
                 f"/extensions/{data['pending_request']}",
                 f"/extensions/{data['requests']['extension granted']}",
                 f"/submissions/{data['submitted']}/return",
                 f"/submissions/{data['submitted']}/exempt",
                 f"/submissions/{data['submitted']}/escalate", f"/cycles/{cycle_id}/pause",
                 f"/partners/{partner_id}/contacts", "/coordinators"):
        pages[path] = coordinator.get(path)

    problems = []
    for where, response in pages.items():
        assert response.status_code in (200, 409, 422), f"{where}: {response.status_code}"
        problems += shown_as_text(response.get_data(as_text=True), where)
    assert not problems, "\n".join(problems)

    def shows(where, *pieces):  # as text, so the check above can fail
        html = pages[where].get_data(as_text=True)
        missing = [p for p in pieces if str(escape(p)) not in html]
        assert not missing, f"{where} does not show {missing}"

    shows("partner ", NAME, COMMENT)
    shows("partner /form", NAME, ANSWER, FIELD_COMMENT)
    shows("partner extension refused", REASON)
    shows("partner form refused", ANSWER)
    shows(f"/cycles/{cycle_id}", NAME)
    shows(f"/cycles/{cycle_id}/partners", NAME)
    shows(f"/cycles/{cycle_id}/partners?q={NAME}", NAME)
    shows(f"/submissions/{data['submitted']}", NAME, CONTACT, HEAD, ANSWER, COMMENT)
    shows(f"/submissions/{group_id}", GROUP, f"{NAME} Mitglied")
    shows(f"/mails/{mail_id}", NAME, COMMENT)
    shows(f"/extensions/{data['pending_request']}", NAME, REASON)
    shows(f"/partners/{partner_id}/contacts", CONTACT, HEAD)
