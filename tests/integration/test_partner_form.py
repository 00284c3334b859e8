"""The partner's form through the real Flask app: drafts, conflicts, bad input, submission."""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select
from werkzeug.test import EnvironBuilder

from tests.integration.conftest import seed_programme
from tests.integration.test_cycle_engine import open_2027, submission_ids
from tests.support.report import TEMPLATE_FILE, VALID_ANSWERS, load_shipped_template
from web import create_app
from workflow.cycles import get_programme
from workflow.models import AccessToken, Attachment, Event, Notification
from workflow.report_templates import load_template_file
from workflow.submissions import issue_link_token, load_submission

PDF = b"%PDF-1.4\n% test\n"


@pytest.fixture
def partner(services, smtp):
    """A submission with its link; ``client`` posts with the page's CSRF token."""
    seed_programme(services, partners=2)
    with services.database.unit_of_work() as uow:
        load_template_file(uow, get_programme(uow), TEMPLATE_FILE)
        uow.commit()
    open_2027(services)
    sid, other = submission_ids(services)
    app = create_app(settings=services.settings, services=services)
    client = app.test_client()
    with services.database.unit_of_work() as uow:
        token = issue_link_token(uow, load_submission(uow, sid), notification_id=None,
                                 now=datetime.now(UTC))
        other_token = issue_link_token(uow, load_submission(uow, other), notification_id=None,
                                       now=datetime.now(UTC))
        uow.commit()
    return {"client": client, "token": token, "sid": sid, "other_token": other_token,
            "services": services, "smtp": smtp[1]}


def form_page(p):
    page = p["client"].get(f"/r/{p['token']}/form")
    html = page.get_data(as_text=True)
    return (html, re.search(r'name="csrf_token" value="([^"]+)"', html).group(1),
            re.search(r'name="version" value="(\d+)"', html).group(1))


def post_form(p, answers, action="save", version=None, **extra):
    _, csrf, current = form_page(p)
    data = {"csrf_token": csrf, "version": version if version is not None else current,
            "action": action, **answers, **extra}
    builder = EnvironBuilder(path=f"/r/{p['token']}/form", method="POST", data=data,
                             content_type="multipart/form-data")
    environ = builder.get_environ()
    try:  # a large body is spooled to a temporary file that nobody else closes
        return p["client"].open(environ)
    finally:
        environ["wsgi.input"].close()
        builder.close()


def saved_answers(p):
    with p["services"].database.unit_of_work() as uow:
        return load_submission(uow, p["sid"]).answers


def test_a_draft_is_saved_resumed_and_submitted_with_a_receipt(partner):
    p = partner
    assert post_form(p, {"staff_total": "1200"}).status_code == 303
    html, _, _ = form_page(p)
    assert 'value="1200"' in html
    response = post_form(p, VALID_ANSWERS, action="review")
    assert response.status_code == 303 and response.headers["Location"].endswith("/review")
    review = p["client"].get(f"/r/{p['token']}/review").get_data(as_text=True)
    assert "18,5 %" in review
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', review).group(1)
    version = re.search(r'name="version" value="(\d+)"', review).group(1)
    done = p["client"].post(f"/r/{p['token']}/submit",
                            data={"csrf_token": csrf, "version": version}, follow_redirects=True)
    assert "Ihr Bericht ist eingegangen" in done.get_data(as_text=True)
    receipt = next(m["message"] for m in p["smtp"].messages
                   if m["message"]["X-Reportcycles-Rung"] == "receipt")
    text = receipt.get_body(("plain",)).get_content()
    assert "Mehrsprachige Stellenanzeigen" in text and "1.200" in text
    assert "/print" in text
    with p["services"].database.unit_of_work() as uow:  # the ladder stopped at once
        left = set(uow.session.scalars(select(Notification.status).where(
            Notification.submission_id == p["sid"], Notification.rung != "receipt")))
        assert left == {"cancelled"}


def test_incomplete_report_shows_a_summary_with_links_and_keeps_the_input(partner):
    p = partner
    response = post_form(p, {"staff_total": "zwölf", "staff_immigration_share": "140"},
                         action="review")
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'id="error-summary"' in html and 'href="#staff_total"' in html
    assert 'value="zwölf"' in html  # what was typed stays on the page ...
    assert saved_answers(p)["staff_total"] == "zwölf"  # ... and in the draft
    assert "ganze Zahl" in html and "nicht größer als 100" in html
    assert 'aria-invalid="true"' in html
    assert html.count('class="error"') >= 9  # every missing required field is marked


def test_markup_in_every_field_is_shown_as_text(partner):
    p = partner
    evil = '<script>alert(1)</script><b onmouseover="x()">'
    post_form(p, {"reporting_person": evil, "plans_next_year": evil, "staff_total": evil,
                  "share_method": evil})
    html, _, _ = form_page(p)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Diese Auswahl gibt es nicht" in html or saved_answers(p)["share_method"] == evil


def test_overlong_text_is_refused_but_the_draft_is_kept(partner):
    p = partner
    post_form(p, {"plans_next_year": "Erster Plan"})
    response = post_form(p, {"plans_next_year": "x" * 5000, "staff_total": "10"},
                         action="review")
    assert response.status_code == 422 and "höchstens 4000 Zeichen" in response.get_data(
        as_text=True)
    assert saved_answers(p)["staff_total"] == "10"


def test_two_editors_get_a_conflict_not_a_silent_overwrite(partner):
    p = partner
    _, _, stale_version = form_page(p)
    post_form(p, {"staff_total": "100"})  # the colleague saves first
    response = post_form(p, {"staff_total": "999"}, version=stale_version)
    assert response.status_code == 409
    assert "Jemand anderes hat diesen Bericht inzwischen gespeichert" in response.get_data(
        as_text=True)
    assert saved_answers(p)["staff_total"] == "100"


def test_a_file_sent_with_a_draft_that_is_not_saved_leaves_nothing_on_disk(partner):
    p = partner
    uploads = p["services"].settings.uploads_dir
    _, _, stale_version = form_page(p)
    post_form(p, {"staff_total": "100"})  # the colleague saves first
    response = post_form(p, {"selection_document": (io_bytes(PDF), "konzept.pdf")},
                         version=stale_version)
    assert response.status_code == 409
    assert not uploads.exists() or list(uploads.iterdir()) == []
    assert post_form(p, {"selection_document": (io_bytes(PDF), "konzept.pdf")}).status_code == 303
    assert len(list(uploads.iterdir())) == 1  # a saved draft keeps its file


def test_uploads_are_checked_by_size_and_content(partner):
    p = partner
    response = post_form(p, {"selection_document": (io_bytes(b"MZ\x90\x00 not a pdf"),
                                                    "bericht.pdf")})
    assert response.status_code == 422 and "Dateityp ist nicht erlaubt" in response.get_data(
        as_text=True)
    big = post_form(p, {"selection_document": (io_bytes(PDF + b"0" * (5 * 1024 * 1024)),
                                               "gross.pdf")})
    assert big.status_code == 422 and "zu groß" in big.get_data(as_text=True)
    assert post_form(p, {"selection_document": (io_bytes(PDF), "../../etc/passwd.pdf")}
                     ).status_code == 303
    with p["services"].database.unit_of_work() as uow:
        [attachment] = uow.session.scalars(select(Attachment)).all()
        assert attachment.filename == "passwd.pdf" and attachment.content_type == "application/pdf"
    html, _, _ = form_page(p)
    link = re.search(r'href="(/r/[^"]+/files/\d+)"', html).group(1)
    with p["client"].get(link) as download:
        assert download.data == PDF and "attachment" in download.headers["Content-Disposition"]
    foreign = p["client"].get(link.replace(p["token"], p["other_token"]))
    assert foreign.status_code == 404


def io_bytes(data):
    import io
    return io.BytesIO(data)


def test_forged_csrf_changes_nothing(partner):
    p = partner
    post_form(p, {"staff_total": "5"})
    response = p["client"].post(f"/r/{p['token']}/form",
                                data={"csrf_token": "forged", "version": "1",
                                      "staff_total": "666"})
    assert response.status_code == 400
    assert saved_answers(p)["staff_total"] == "5"


def test_tampered_expired_and_foreign_links(partner):
    p = partner
    assert p["client"].get(f"/r/{p['token'][:-2]}zz/form").status_code == 404
    with p["services"].database.unit_of_work() as uow:
        for row in uow.session.scalars(select(AccessToken)):
            row.expires_at = datetime.now(UTC) - timedelta(days=1)
        uow.commit()
    expired = p["client"].get(f"/r/{p['token']}/form")
    assert expired.status_code == 410
    assert "Koordinierungsstelle" in expired.get_data(as_text=True)


def test_extension_request_and_intent_reach_the_coordinators(partner):
    p = partner
    page = p["client"].get(f"/r/{p['token']}/extension").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    bad = p["client"].post(f"/r/{p['token']}/extension",
                           data={"csrf_token": csrf, "proposed_due": "2020-01-01", "reason": "x"})
    assert bad.status_code == 422 and "nach der jetzigen Frist" in bad.get_data(as_text=True)
    # Both fields wrong: both said at once, each beside its field and linked from the summary.
    empty = p["client"].post(f"/r/{p['token']}/extension",
                             data={"csrf_token": csrf, "proposed_due": "", "reason": " "})
    html = empty.get_data(as_text=True)
    assert empty.status_code == 422 and "Bitte prüfen Sie 2 Angaben" in html
    assert '<a href="#proposed_due">Bitte geben Sie ein gültiges Datum an' in html
    assert '<a href="#reason">Bitte nennen Sie einen Grund' in html
    assert 'aria-describedby="proposed_due-format proposed_due-error" aria-invalid="true"' in html
    assert 'id="reason-error"' in html and 'aria-describedby="reason-error" aria-invalid="true"' in html
    ok = p["client"].post(f"/r/{p['token']}/extension",
                          data={"csrf_token": csrf, "proposed_due": "2027-06-30",
                                "reason": "Personalwechsel im Integrationsteam"})
    assert ok.status_code == 303
    # One request waits for a decision at a time: the page says so instead of a second form.
    waiting = p["client"].get(f"/r/{p['token']}/extension").get_data(as_text=True)
    assert "auf eine Frist bis 30.06.2027 liegt der Koordinierungsstelle vor" in waiting
    assert 'name="proposed_due"' not in waiting
    again = p["client"].post(f"/r/{p['token']}/extension",
                             data={"csrf_token": csrf, "proposed_due": "2027-07-31",
                                   "reason": "Noch ein Antrag"})
    assert again.status_code == 422 and "noch vor" in again.get_data(as_text=True)
    intent = p["client"].post(f"/r/{p['token']}/intent",
                              data={"csrf_token": csrf, "intent": "will_submit_by",
                                    "until": "2027-05-10"})
    assert intent.status_code == 303
    rungs = [m["message"]["X-Reportcycles-Rung"] for m in p["smtp"].messages]
    assert rungs.count("extension_request") == 1 and rungs.count("intent_notice") == 1
    with p["services"].database.unit_of_work() as uow:
        assert str(load_submission(uow, p["sid"]).paused_until) == "2027-05-10"
        assert uow.session.scalar(select(func.count()).select_from(Event).where(
            Event.kind == "intent_declared")) == 1
        assert uow.session.scalar(select(func.count()).select_from(Notification).where(
            Notification.rung == "intent_notice")) == 1


def test_guessing_links_is_slowed_down(partner):
    p = partner
    statuses = [p["client"].get(f"/r/guess{n:04d}guess").status_code for n in range(32)]
    assert statuses[:30] == [404] * 30 and statuses[-1] == 429
    assert p["client"].get(f"/r/{p['token']}").status_code == 200  # a valid link still opens


def test_personal_links_and_addresses_stay_out_of_the_logs(partner, caplog):
    import logging
    p = partner
    with caplog.at_level(logging.INFO):
        logging.getLogger("werkzeug").info('127.0.0.1 - - "GET /r/%s/form HTTP/1.1" 200 -',
                                           p["token"])
        p["smtp"].refuse_recipients = {"p0@example.org": "550 no such user",
                                       "p1@example.org": "550 no such user"}
        post_form(p, VALID_ANSWERS, action="review")
        review = p["client"].get(f"/r/{p['token']}/review").get_data(as_text=True)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', review).group(1)
        version = re.search(r'name="version" value="(\d+)"', review).group(1)
        p["client"].post(f"/r/{p['token']}/submit", data={"csrf_token": csrf, "version": version})
    ours = ("werkzeug", "workflow", "tasks", "web", "reportcycles")
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(ours))
    assert "failed for good" in text  # the refused receipt was logged ...
    assert p["token"] not in text and "@example.org" not in text  # ... without link or address


def test_last_years_accepted_report_prefills_and_changes_are_shown(services, smtp):
    from datetime import date

    from tests.integration.conftest import berlin
    from workflow.cycles import open_cycle
    from workflow.review import accept_report
    from workflow.states import Action
    from workflow.submissions import apply_action
    seed_programme(services, partners=1)
    with services.database.unit_of_work() as uow:
        programme = get_programme(uow)
        load_shipped_template(uow, programme, year=2026)
        last = open_cycle(uow, programme, 2026, now=berlin(date(2026, 2, 1), 7),
                          opens_on=date(2026, 2, 1), due_on=date(2026, 4, 30))
        uow.session.flush()
        [old] = submission_ids_of(uow, last.id)
        apply_action(uow, old, Action.SUBMIT, now=berlin(date(2026, 4, 1)), actor="partner",
                     answers={**VALID_ANSWERS, "staff_immigration_share": "11"})
        accept_report(uow, old, now=berlin(date(2026, 5, 1)), actor="koordination")
        cycle = open_cycle(uow, programme, 2027, now=berlin(date(2027, 2, 1), 7),
                           opens_on=date(2027, 2, 1), due_on=date(2027, 4, 30))
        uow.session.flush()
        [new] = submission_ids_of(uow, cycle.id)
        token = issue_link_token(uow, load_submission(uow, new), notification_id=None,
                                 now=datetime.now(UTC))
        uow.commit()
    client = create_app(settings=services.settings, services=services).test_client()
    p = {"client": client, "token": token}
    html, _, _ = form_page(p)
    assert "vorausgefüllt" in html and 'value="1200"' in html and 'value="11"' in html
    post_form(p, {**VALID_ANSWERS, "staff_immigration_share": "18,5"}, action="review")
    review = client.get(f"/r/{token}/review").get_data(as_text=True)
    assert "1 Angabe ist gegenüber dem Vorjahr geändert." in review
    assert "Vorjahr: 11 %" in review
    assert "Im Vorjahr lag der Wert bei 11 %" in review  # a question, not an error
    assert "Bericht verbindlich einreichen" in review


def submission_ids_of(uow, cycle_id):
    from workflow.models import Submission
    return list(uow.session.scalars(select(Submission.id).where(Submission.cycle_id == cycle_id)))


def test_no_input_makes_the_partner_pages_fail(partner):
    p = partner
    _, csrf, version = form_page(p)
    odd_values = ["", "-1", "1e309", "NaN", "０１２", "\x00", "x" * 30000, "<img src=x>",
                  "2027-02-30", "31.02.2027", "9" * 400]
    for value in odd_values:
        answers = {q: value for q in ("staff_total", "staff_immigration_share", "budget_eur",
                                      "selection_decision_date", "share_method",
                                      "training_formats", "plans_next_year", "share_surveyed")}
        for action in ("save", "review", "autosave", "complete", "bogus"):
            response = post_form(p, answers, action=action)
            assert response.status_code < 500, (value, action, response.status_code)
        for path, data in (("/extension", {"proposed_due": value, "reason": value}),
                           ("/intent", {"intent": value, "until": value, "reason": value}),
                           ("/submit", {"version": value}), ("/start", {})):
            response = p["client"].post(f"/r/{p['token']}{path}",
                                        data={"csrf_token": csrf, **data})
            assert response.status_code < 500, (path, value, response.status_code)
    assert post_form(p, {"staff_total": "7"}, version="not-a-number").status_code == 409
    assert p["client"].get(f"/r/{p['token']}/files/999999").status_code == 404


def test_a_partner_who_promised_a_date_hears_nothing_until_then(partner):
    from datetime import date

    from tests.integration.conftest import berlin
    from tests.integration.test_cycle_engine import run_sweep
    from workflow.requests import declare_intent
    p = partner
    services, handler = p["services"], p["smtp"]
    run_sweep(services, berlin(date(2027, 2, 1)))
    with services.database.unit_of_work() as uow:
        declare_intent(uow, p["sid"], intent="will_submit_by", until=date(2027, 5, 12),
                       now=berlin(date(2027, 3, 1)), actor="partner")
        uow.commit()
    handler.clear()
    run_sweep(services, berlin(date(2027, 5, 7)))  # overdue-3 for both; one of them is paused
    overdue = [m["envelope_to"] for m in handler.messages
               if m["message"]["X-Reportcycles-Rung"] == "overdue-3"]
    assert len(overdue) == 1
    handler.clear()
    run_sweep(services, berlin(date(2027, 5, 13)))  # the promised day has passed: one catch-up
    assert [m["message"]["X-Reportcycles-Rung"] for m in handler.messages] == ["overdue-3"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite has no row locks
def test_saving_a_draft_locks_the_report_once_in_the_links_own_query(partner):
    p = partner
    form_page(p)
    locks = []

    def count(conn, cursor, statement, parameters, context, many):
        if " UPDATE" in statement.upper() and statement.lstrip().upper().startswith("SELECT"):
            locks.append(statement)

    engine = p["services"].database.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        response = post_form(p, {"staff_total": "1200"})
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert response.status_code == 303 and saved_answers(p)["staff_total"] == "1200"
    # FOR NO KEY UPDATE: a worker's rows that refer to the report (events, links) need not wait.
    assert len(locks) == 1 and "access_token" in locks[0]
    assert "FOR NO KEY UPDATE OF submission" in locks[0]


def test_the_form_and_its_template_are_read_in_one_query(partner):
    p = partner
    assert post_form(p, {"staff_total": "1200"}).status_code == 303  # a draft on its template
    selects = []

    def count(conn, cursor, statement, parameters, context, many):
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    engine = p["services"].database.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        html, _, _ = form_page(p)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert 'name="staff_total"' in html
    assert len(selects) == 1 and "report_template" in selects[0]
