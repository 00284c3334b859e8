"""Every partner page, in German and English, is valid HTML for the W3C Nu checker."""
from __future__ import annotations

import io
import re
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select

from tests.integration.conftest import berlin, seed_programme
from tests.support.nu_checker import nu_check
from tests.support.report import VALID_ANSWERS
from tests.support.sign_in import csrf_token
from web import create_app
from workflow.cycles import get_programme, open_cycle
from workflow.models import AccessToken, Submission
from workflow.submissions import issue_link_token, load_submission

PDF = b"%PDF-1.4\n% test\n"
VERSION = re.compile(r'name="version" value="(\d+)"')


def open_cycle_with_links(services, count: int) -> list[str]:
    """A 2027 cycle of ``count`` partners; one personal link for each submission."""
    seed_programme(services, partners=count)
    with services.database.unit_of_work() as uow:
        open_cycle(uow, get_programme(uow), 2027, now=berlin(date(2027, 2, 1), 7, 0),
                   opens_on=date(2027, 2, 1), due_on=date(2027, 4, 30))
        ids = uow.session.scalars(select(Submission.id).order_by(Submission.id)).all()
        tokens = [issue_link_token(uow, load_submission(uow, sid), notification_id=None,
                                   now=datetime.now(UTC)) for sid in ids]
        uow.commit()
    return tokens


def partner_pages(client, token: str) -> dict:
    """Each page of the partner's journey as the partner meets it, and its error variants."""
    base = f"/r/{token}"
    pages = {"landing": client.get(base)}
    csrf = csrf_token(pages["landing"].get_data(as_text=True))
    client.post(f"{base}/start", data={"csrf_token": csrf})
    pages["form_empty"] = client.get(f"{base}/form")
    version = VERSION.search(pages["form_empty"].get_data(as_text=True)).group(1)
    pages["form_errors"] = client.post(f"{base}/form", data={
        "csrf_token": csrf, "version": version, "action": "review",
        "staff_total": "zwölf", "staff_immigration_share": "140", "share_method": "x",
        "selection_decision_date": "31.02.2027",
        "selection_document": (io.BytesIO(b"not a pdf"), "plan.pdf", "application/pdf")})
    pages["form_conflict"] = client.post(f"{base}/form", data={
        "csrf_token": csrf, "version": "0", "action": "save", "staff_total": "3"})
    version = VERSION.search(client.get(f"{base}/form").get_data(as_text=True)).group(1)
    saved = client.post(f"{base}/form", data={
        "csrf_token": csrf, "version": version, "action": "save", **VALID_ANSWERS,
        "training_formats": ["online", "other"], "selection_decision_date": "2027-03-01",
        "selection_document": (io.BytesIO(PDF), "plan.pdf", "application/pdf")})
    assert saved.status_code == 303, saved.get_data(as_text=True)
    pages["form_saved"] = client.get(f"{base}/form")
    pages["review"] = client.get(f"{base}/review")
    pages["extension"] = client.get(f"{base}/extension")
    pages["extension_errors"] = client.post(f"{base}/extension", data={
        "csrf_token": csrf, "proposed_due": "kein Datum", "reason": ""})
    pages["intent"] = client.get(f"{base}/intent")
    pages["intent_errors"] = client.post(f"{base}/intent", data={
        "csrf_token": csrf, "intent": "will_submit_by", "until": "2020-01-01"})
    pages["csrf_refused"] = client.post(f"{base}/form", data={"action": "save"})
    version = VERSION.search(pages["review"].get_data(as_text=True)).group(1)
    submitted = client.post(f"{base}/submit", data={"csrf_token": csrf, "version": version})
    assert submitted.status_code == 303, submitted.get_data(as_text=True)
    pages["receipt"] = client.get(base)  # the thanks flashed after submitting, on the landing page
    pages["print"] = client.get(f"{base}/print")
    pages["unknown_link"] = client.get(f"/r/{token[:-3]}zzz")
    pages["sign_in_link_gone"] = client.get("/login/link/" + "y" * 43)
    return pages


def test_every_partner_page_is_valid_html_in_german_and_english(services, tmp_path):
    app = create_app(settings=services.settings, services=services)
    german_token, english_token = open_cycle_with_links(services, 2)
    pages = {}
    for language, token in (("de", german_token), ("en", english_token)):
        client = app.test_client()
        landing = client.get(f"/r/{token}").get_data(as_text=True)
        client.post("/language", data={"csrf_token": csrf_token(landing), "lang": language,
                                       "next": f"/r/{token}"})
        pages.update({f"{language}_{name}": response
                      for name, response in partner_pages(client, token).items()})
        assert f'<html lang="{language}">' in pages[f"{language}_landing"].get_data(as_text=True)
    with services.database.unit_of_work() as uow:
        for row in uow.session.scalars(select(AccessToken)):
            row.expires_at = datetime.now(UTC) - timedelta(days=1)
        uow.commit()
    pages["de_link_expired"] = app.test_client().get(f"/r/{german_token}/form")

    expected = {"form_errors": 422, "form_conflict": 409, "extension_errors": 422,
                "intent_errors": 422, "csrf_refused": 400, "unknown_link": 404,
                "link_expired": 410, "sign_in_link_gone": 404}
    files = []
    for name, response in pages.items():
        assert response.status_code == expected.get(name.split("_", 1)[1], 200), name
        files.append(tmp_path / f"{name}.html")
        files[-1].write_text(response.get_data(as_text=True), encoding="utf-8")
    problems = [m for m in nu_check(files) if m.type != "info" or m.is_warning]
    assert not problems, "\n".join(map(str, problems))
