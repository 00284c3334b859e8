"""A coordinator's page about one partner on the real Flask app, SQLite and PostgreSQL, with mails
sent to a real SMTP server: contacts, the timeline with each mail's copy (no working link in
it), the mails ahead, the answers beside last year's, an attachment that downloads as it was
uploaded, review comments, extension requests, a group partner's members and their sums (also
in the print view and the receipt); markup shown as text; unknown ids; viewers; valid HTML."""
from __future__ import annotations

import re
from datetime import date, time
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, select, update

from infra.mail import format_datetime
from tests.integration.conftest import berlin
from tests.support.nu_checker import nu_check
from tests.support.report import VALID_ANSWERS, load_shipped_template
from tests.support.sign_in import signed_in_client
from web import create_app
from workflow.cycles import open_cycle
from workflow.member_parts import complete_member_part, save_member_part
from workflow.models import (Attachment, Contact, Event, MemberPart, Notification, Partner,
                             Submission)
from workflow.partners import ensure_programme, import_partners
from workflow.policy import END_OF_DAY, ReportingPolicy
from workflow.reporting import add_attachment, save_draft, submit_report
from workflow.requests import request_extension
from workflow.review import accept_report, return_report
from workflow.states import Action
from workflow.submissions import apply_action, issue_link_token, load_submission
from workflow.sweep import sweep

PDF = b"%PDF-1.4\n% ein Konzept\n" + bytes(range(256))
ALL_DAY = ReportingPolicy(window_start=time(0, 0), window_end=END_OF_DAY,
                          window_working_days_only=False)
CSV = ("name,kind,contact_name,contact_email,deputy_email,head_name,head_email,language,"
       "joined_on,group\n"
       'Stadt <i>Solingen</i>,Kommune,Anna <b>Berg</b>,anna@example.org,vertretung@example.org,'
       'Dr. Leitung,leitung@example.org,de,2019-01-01,\n'
       "Städtekooperation,Kooperation,Lea Lead,lead@example.org,,,,de,2019-01-01,\n"
       "Stadt Herne,Kommune,H,herne@example.org,,,,de,2019-01-01,Städtekooperation\n"
       "Stadt Bochum,Kommune,B,bochum@example.org,,,,de,2019-01-01,Städtekooperation\n")
EVIL = "<script>alert(1)</script>"
TOKEN_IN_LINK = re.compile(r"/r/([A-Za-z0-9_-]{20,})")


def submission_of(uow, name, year):
    return uow.session.scalar(select(Submission.id).join(Partner).where(
        Partner.name == name, Submission.cycle.has(year=year)))


@pytest.fixture
def world(services, smtp):
    """Solingen: last year's report accepted; this year's invited (mail sent), submitted with
    a file, returned with comments, an extension asked for. The Städtekooperation: both member
    cities finished their parts, the lead submitted (receipt sent)."""
    with services.database.unit_of_work() as uow:
        programme = ensure_programme(uow, policy=ALL_DAY,
                                     coordinator_emails=("koordination@example.org",))
        import_partners(uow, programme, CSV)
        load_shipped_template(uow, programme, year=2026)
        load_shipped_template(uow, programme, year=2027)
        open_cycle(uow, programme, 2026, now=berlin(date(2026, 2, 1), 7),
                   opens_on=date(2026, 2, 1), due_on=date(2026, 4, 30))
        uow.session.flush()
        old = submission_of(uow, "Stadt <i>Solingen</i>", 2026)
        apply_action(uow, old, Action.SUBMIT, now=berlin(date(2026, 4, 1)), actor="partner",
                     answers={**VALID_ANSWERS, "staff_total": "1000"})
        accept_report(uow, old, now=berlin(date(2026, 5, 1)), actor="koordination@example.org")
        cycle = open_cycle(uow, programme, 2027, now=berlin(date(2027, 2, 1), 7),
                           opens_on=date(2027, 2, 1), due_on=date(2027, 4, 30))
        uow.commit()
        cycle_id = cycle.id
    with services.database.unit_of_work() as uow:
        sweep(uow, berlin(date(2027, 2, 1), 9))  # the invitations leave after this commit
        uow.commit()
    with services.database.unit_of_work() as uow:
        sid = submission_of(uow, "Stadt <i>Solingen</i>", 2027)
        attachment = add_attachment(
            uow, sid, "selection_document", filename="Konzept <Entwurf> & Plan 2027.pdf",
            content_type="application/pdf", data=PDF, storage=services.settings.uploads_dir,
            now=berlin(date(2027, 3, 1)), actor="partner")
        apply_action(uow, sid, Action.SUBMIT, now=berlin(date(2027, 3, 2)), actor="partner",
                     answers={**VALID_ANSWERS, "plans_next_year": EVIL + " Mentoring",
                              "selection_document": str(attachment.id)})
        return_report(uow, sid, comments={"_general": "<em>Bitte</em> prüfen",
                                          "staff_total": "Stimmt die Zahl?"},
                      now=berlin(date(2027, 3, 3)), actor="koordination@example.org")
        request_extension(uow, sid, reason="<b>Personalwechsel</b>",
                          proposed_due=date(2027, 6, 30), now=berlin(date(2027, 3, 4)),
                          actor="partner")
        uow.session.execute(update(Contact).where(Contact.email == "vertretung@example.org")
                            .values(bounced_at=berlin(date(2027, 2, 2)),
                                    bounce_reason="550 <unknown> user"))
        uow.commit()
        attachment_id = attachment.id
    with services.database.unit_of_work() as uow:
        gid = submission_of(uow, "Städtekooperation", 2027)
        parts = dict(uow.session.execute(select(Partner.name, MemberPart.id).join(
            MemberPart, MemberPart.partner_id == Partner.id)).all())
        for name, figures in (("Stadt Herne", {"staff_total": "300", "budget_eur": "1000,50"}),
                              ("Stadt Bochum", {"staff_total": "250", "plans_next_year": EVIL})):
            part = uow.session.get(MemberPart, parts[name])
            save_member_part(uow, part.id, {**VALID_ANSWERS, **figures},
                             expected_version=part.version, now=berlin(date(2027, 3, 5)),
                             actor="member")
            complete_member_part(uow, part.id, expected_version=part.version,
                                 now=berlin(date(2027, 3, 5)), actor="member")
        save_draft(uow, gid, dict(VALID_ANSWERS), expected_version=0,
                   now=berlin(date(2027, 3, 6)), actor="partner")
        submit_report(uow, gid, expected_version=1, now=berlin(date(2027, 3, 6)),
                      actor="partner")
        group_token = issue_link_token(uow, load_submission(uow, gid), notification_id=None,
                                       now=berlin(date(2027, 3, 6)))
        uow.commit()
    app = create_app(settings=services.settings, services=services)
    return {"app": app, "client": signed_in_client(app, services, "koordination@example.org"),
            "services": services, "smtp": smtp[1], "sid": sid, "gid": gid,
            "cycle_id": cycle_id, "attachment_id": attachment_id, "group_token": group_token}


def page_of(w, submission_id, client=None):
    response = (client or w["client"]).get(f"/submissions/{submission_id}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def section(html, heading_id):
    start = html.index(f'id="{heading_id}"')
    end = html.find("</section>", start)
    return html[start:end]


def sent_mails(w, **where):
    with w["services"].database.unit_of_work() as uow:
        query = select(Notification).where(*(getattr(Notification, k) == v
                                             for k, v in where.items()))
        found = list(uow.session.scalars(query.order_by(Notification.id)))
        uow.session.expunge_all()  # kept as loaded when the unit of work rolls back
        return found


def test_the_partner_page_shows_contacts_answers_files_comments_and_requests(world):
    w = world
    html = page_of(w, w["sid"])
    assert "<h1>Stadt &lt;i&gt;Solingen&lt;/i&gt;</h1>" in html and "<i>Solingen" not in html
    contacts = section(html, "contacts")
    assert "Anna &lt;b&gt;Berg&lt;/b&gt;" in contacts and "<b>Berg" not in contacts
    for role in ("Berichtskontakt", "Vertretung", "Leitung"):
        assert role in contacts
    bounced = next(r for r in contacts.split("<tr>") if "vertretung@example.org" in r)
    assert "unzustellbar seit" in bounced and "550 &lt;unknown&gt; user" in bounced
    assert "in Ordnung" in next(r for r in contacts.split("<tr>") if "anna@example.org" in r)

    answers = section(html, "answers")  # this year beside last year's accepted report
    row = next(r for r in answers.split("<tr>") if "Beschäftigte insgesamt" in r)
    assert re.search(r"<td>1.200 <span class=\"badge\">geändert</span></td>\s*<td>1.000</td>", row)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Mentoring" in answers
    assert EVIL not in html

    files = section(html, "attachments")
    assert f'href="/attachments/{w["attachment_id"]}"' in files
    assert "Konzept &lt;Entwurf&gt; &amp; Plan 2027.pdf" in files and "application/pdf" in files

    comments = section(html, "comments")
    assert "&lt;em&gt;Bitte&lt;/em&gt; prüfen" in comments and "Stimmt die Zahl?" in comments
    assert "Beschäftigte insgesamt" in comments and "Zum ganzen Bericht" in comments
    requests = section(html, "extensions")
    assert "&lt;b&gt;Personalwechsel&lt;/b&gt;" in requests and "30.06.2027" in requests
    assert "zurückgegeben" in html


def test_the_timeline_lists_events_and_mails_newest_first(world):
    w = world
    html = page_of(w, w["sid"])
    timeline = section(html, "timeline")
    returned = timeline.index("Zur Überarbeitung zurückgegeben")
    assert "koordination@example.org" in timeline[returned:returned + 200]
    assert timeline.index("Fristverlängerung beantragt") < returned \
        < timeline.index("Bericht eingereicht") < timeline.index("Eingeladen")
    assert "vorgeschlagene Frist: 30.06.2027" in timeline
    [invitation] = sent_mails(w, submission_id=w["sid"], rung="invitation")
    assert invitation.status == "sent"
    assert f'href="/mails/{invitation.id}"' in timeline
    assert "E-Mail versendet: Einladung" in timeline
    [receipt] = sent_mails(w, submission_id=w["sid"], email="receipt")
    assert f'href="/mails/{receipt.id}"' in timeline

    [returned] = sent_mails(w, submission_id=w["sid"], email="returned")
    with w["services"].database.unit_of_work() as uow:  # as if the server had refused it
        uow.session.execute(update(Notification).where(Notification.id == returned.id).values(
            status="failed", sent_at=None, sent_text=None,
            last_error="554 <anna@example.org> refused for /r/abcdefghijklmnop"))
        uow.commit()
    timeline = section(page_of(w, w["sid"]), "timeline")
    assert "E-Mail fehlgeschlagen: Rückgabe zur Überarbeitung</a> – 554 &lt;anna@example.org&gt;" \
        in timeline and "abcdefghijklmnop" not in timeline
    failed = w["client"].get(f"/mails/{returned.id}").get_data(as_text=True)
    assert "nicht versendet" in failed and "554 &lt;anna@example.org&gt; refused for /r/…" in failed


def test_a_sent_mail_opens_as_it_left_without_a_working_link(world):
    w = world
    [invitation] = sent_mails(w, submission_id=w["sid"], rung="invitation")
    [received] = [m["message"] for m in w["smtp"].messages
                  if m["message"]["X-Reportcycles-Rung"] == "invitation"
                  and "anna@example.org" in m["message"]["To"]]
    token = TOKEN_IN_LINK.search(received.get_body(("plain",)).get_content()).group(1)
    assert token not in (invitation.sent_text or "x" * 0) and "/r/…" in invitation.sent_text
    assert invitation.sent_to == ["anna@example.org"]
    assert invitation.sent_subject == received["Subject"]

    response = w["client"].get(f"/mails/{invitation.id}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert token not in html and "/r/…" in html
    assert received["Subject"].split(" – ")[0] in html and "anna@example.org" in html
    assert invitation.message_id.replace("<", "&lt;").replace(">", "&gt;") in html
    local = invitation.sent_at.astimezone(ZoneInfo("Europe/Berlin"))
    assert format_datetime(local, "de") in html
    assert "Stadt &lt;i&gt;Solingen&lt;/i&gt;" in html  # the way back names the partner, as text

    with w["services"].database.unit_of_work() as uow:  # sent before copies were kept
        uow.session.execute(update(Notification).where(Notification.id == invitation.id)
                            .values(sent_text=None, sent_subject=None, sent_to=None))
        uow.commit()
    old = w["client"].get(f"/mails/{invitation.id}").get_data(as_text=True)
    assert "keine Kopie gespeichert" in old


def test_the_mails_ahead_are_listed_in_berlin_time(world):
    w = world
    ahead = [n for n in sent_mails(w, submission_id=w["sid"]) if n.status == "planned"]
    assert ahead  # the return planned the reminders again
    planned = section(page_of(w, w["sid"]), "planned")
    for mail in ahead:
        local = mail.due_at.astimezone(ZoneInfo("Europe/Berlin"))
        assert format_datetime(local, "de") in planned
        assert mail.rung not in planned  # the rung in words, not its code
    assert "Erinnerung 28 Arbeitstage vor der Frist" in planned and "Berichtskontakt" in planned


def test_an_attachment_downloads_byte_identical_with_safe_headers(world):
    w = world
    with w["client"].get(f"/attachments/{w['attachment_id']}") as response:
        assert response.status_code == 200 and response.data == PDF
    assert response.headers["Content-Type"] == "application/pdf"
    disposition = response.headers["Content-Disposition"]
    assert disposition == 'attachment; filename="Konzept <Entwurf> & Plan 2027.pdf"' 
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "private, no-store"

    with w["services"].database.unit_of_work() as uow:  # a type that a browser would run
        uow.session.execute(update(Attachment).where(Attachment.id == w["attachment_id"])
                            .values(content_type="text/html", filename='Köln "neu".pdf'))
        storage_key = uow.session.get(Attachment, w["attachment_id"]).storage_key
        uow.commit()
    with w["client"].get(f"/attachments/{w['attachment_id']}") as risky:
        assert risky.headers["Content-Type"] == "application/octet-stream" and risky.data == PDF
    assert risky.headers["Content-Disposition"] == (
        "attachment; filename=\"Koln \\\"neu\\\".pdf\"; filename*=UTF-8''K%C3%B6ln%20%22neu%22.pdf")
    (w["services"].settings.uploads_dir / storage_key).unlink()
    assert w["client"].get(f"/attachments/{w['attachment_id']}").status_code == 404


def test_a_group_shows_its_members_parts_and_their_sums(world):
    w = world
    html = page_of(w, w["gid"])
    members = section(html, "members")
    assert "Stadt Herne" in members and "Stadt Bochum" in members
    assert members.count("fertig") >= 2
    totals = members[members.index("Summen der Mitglieder"):]
    staff = next(r for r in totals.split("<tr>") if "Beschäftigte insgesamt" in r)
    assert ">550<" in staff and "2 von 2 Mitgliedern" in staff
    budget = next(r for r in totals.split("<tr>") if "Eingesetzte Mittel" in r)
    assert ">1.000,50<" in budget and "1 von 2 Mitgliedern" in budget
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in members and EVIL not in html

    printed = w["app"].test_client().get(f"/r/{w['group_token']}/print")
    assert printed.status_code == 200
    text = printed.get_data(as_text=True)
    assert "Summen der Mitglieder" in text and ">550<" in text and "2 von 2 Mitgliedern" in text

    [receipt] = [m["message"] for m in w["smtp"].messages
                 if m["message"]["X-Reportcycles-Rung"] == "receipt"
                 and "lead@example.org" in m["message"]["To"]]
    plain = receipt.get_body(("plain",)).get_content()
    assert "Summen der Mitglieder" in plain
    assert re.search(r"\nBeschäftigte insgesamt[^\n]*: 550 \(2 von 2 Mitgliedern\)\n", plain)
    assert "550 (2 von 2 Mitgliedern)" in receipt.get_body(("html",)).get_content()


def test_unknown_ids_are_not_found_and_viewers_may_read(world):
    w = world
    for path in ("/submissions/999999", "/mails/999999", "/attachments/999999",
                 "/cycles/999999/partners"):
        response = w["client"].get(path)
        assert response.status_code == 404 and "Seite nicht gefunden" in response.get_data(
            as_text=True)
    viewer = signed_in_client(w["app"], w["services"], "viewer@example.org", "viewer")
    assert "Stadt &lt;i&gt;Solingen&lt;/i&gt;" in page_of(w, w["sid"], viewer)
    [invitation] = sent_mails(w, submission_id=w["sid"], rung="invitation")
    assert viewer.get(f"/mails/{invitation.id}").status_code == 200
    with viewer.get(f"/attachments/{w['attachment_id']}") as download:
        assert download.data == PDF
    stranger = w["app"].test_client()
    for path in (f"/submissions/{w['sid']}", f"/mails/{invitation.id}",
                 f"/attachments/{w['attachment_id']}"):
        assert stranger.get(path).status_code == 303


def test_the_dashboard_pages_are_valid_html_in_both_languages(world, tmp_path):
    w = world
    [invitation] = sent_mails(w, submission_id=w["sid"], rung="invitation")
    paths = {"table": f"/cycles/{w['cycle_id']}/partners",
             "table_filtered": f"/cycles/{w['cycle_id']}/partners?q=stadt&sort=-state&overdue=1",
             "partner": f"/submissions/{w['sid']}", "group": f"/submissions/{w['gid']}",
             "mail": f"/mails/{invitation.id}", "not_found": "/submissions/999999",
             "print": f"/r/{w['group_token']}/print"}
    files = []
    for language in ("de", "en"):
        with w["client"].session_transaction() as session:
            session["lang"] = language
        for name, path in paths.items():
            response = w["client"].get(path)
            assert response.status_code < 500, path
            files.append(tmp_path / f"{name}_{language}.html")
            files[-1].write_text(response.get_data(as_text=True), encoding="utf-8")
    english = (tmp_path / "partner_en.html").read_text(encoding="utf-8")
    assert 'lang="en"' in english and "Contacts" in english and "30 June 2027" in english
    # The names of states and kinds follow the page too, though German was rendered first.
    assert "<dt>State</dt><dd>returned</dd>" in english and "Municipality" in english
    table = (tmp_path / "table_en.html").read_text(encoding="utf-8")
    assert "zurückgegeben" not in table and "returned" in table
    problems = [m for m in nu_check(files) if m.type != "info" or m.is_warning]
    assert not problems, "\n".join(map(str, problems))


def statements_for(w, path) -> int:
    """How many statements a page asks; it writes nothing (looking changes nothing)."""
    engine, seen = w["services"].database.engine, []

    def count(_conn, _cursor, statement, *_args):
        seen.append(statement.lstrip().split(None, 1)[0].upper())

    event.listen(engine, "before_cursor_execute", count)
    try:
        assert w["client"].get(path).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert not {"UPDATE", "INSERT", "DELETE"} & set(seen), seen
    return len(seen)


def test_the_page_asks_the_same_few_queries_however_long_its_history(world):
    w = world
    with w["services"].database.unit_of_work() as uow:  # as if its form were not chosen yet
        uow.session.execute(update(Submission).where(Submission.id == w["sid"])
                            .values(template_id=None))
        uow.commit()
    statements_for(w, f"/submissions/{w['sid']}")
    path = f"/submissions/{w['gid']}"
    before = statements_for(w, path)
    with w["services"].database.unit_of_work() as uow:  # a third member and a long history
        group = uow.session.get(Submission, w["gid"])
        for name in ("Stadt Essen", "Stadt Dortmund"):
            member = Partner(programme_id=group.partner.programme_id, name=name, kind="kommune",
                             group_id=group.partner_id)
            uow.session.add(member)
            uow.session.flush()
            uow.session.add(MemberPart(submission_id=group.id, partner_id=member.id,
                                       answers=dict(VALID_ANSWERS)))
        for n in range(30):
            uow.session.add(Event(cycle_id=group.cycle_id, submission_id=group.id,
                                  kind="member_part_saved", at=berlin(date(2027, 3, 7)),
                                  actor="member", payload={"member": f"Stadt {n}"}))
        uow.commit()
    html = page_of(w, w["gid"])
    assert "Stadt Dortmund" in html and "4 von 4 Mitgliedern" in html
    assert statements_for(w, path) == before < 20
