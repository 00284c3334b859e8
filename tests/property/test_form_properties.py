"""The partner's form through the real Flask app, with anything in every field of the shipped
template (and in version, action and lang): never a 500, the raw input always kept as the draft,
every problem shown as a message next to its field, nothing half written."""
from __future__ import annotations

import io
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from markupsafe import escape
from hypothesis import event, example, given
from hypothesis import strategies as st
from sqlalchemy import select
from werkzeug.datastructures import MultiDict
from werkzeug.test import EnvironBuilder

from infra.settings import Settings
from reportcycles.bootstrap import build
from tests.support.strategies import (any_answer, answer_for, choices_for, environment, huge,
                                      load_shipped_template, mutated, property_settings,
                                      text_words, tricky_text, uploads)
from web import create_app
from workflow.models import Attachment, MemberPart, Partner, Submission
from workflow.errors import InvalidInput
from workflow.report_form import (FIELD_LIMIT, ReportTemplateDef, check, display, jumps,
                                  read_form)
from workflow.reporting import ALLOWED_UPLOADS
from workflow.submissions import issue_link_token, load_submission

TEMPLATE = load_shipped_template()
QUESTIONS = [q for section in TEMPLATE["sections"] for q in section["questions"]]
DEFINITION = ReportTemplateDef.from_dict(TEMPLATE)
ACTIONS = ["save", "review", "autosave", "complete"]
REFUSED_FILE = {"de": ("Dieser Dateityp ist nicht erlaubt", "Die Datei ist zu groß"),
                "en": ("This file type is not allowed", "The file is too large")}
FIELD_NAME_SAFE = re.compile(r'^[^"\\\r\n]+$')  # what the test client can put in a filename


class Site:
    """The app, its services and uploads folder; personal links ("lead", "member") and what
    they open (a submission id, a member part id)."""

    def __init__(self, app, services, uploads: Path, tokens: dict, targets: dict):
        self.app, self.services, self.uploads = app, services, uploads
        self.tokens, self.targets = tokens, targets

    def __repr__(self):  # hypothesis prints the fixture with every failing example
        return f"Site({self.targets})"


@pytest.fixture(scope="module")
def site(tmp_path_factory, seeded_sqlite, smtp_session):
    """The web app on a copy of the seeded database, with a link to an open report (Stadt
    Solingen), a member's link to its part of a group report (Stadt Bochum) and a link for the
    small forms (Partner 00002: extension and intent)."""
    root = tmp_path_factory.mktemp("form-site")
    shutil.copy(seeded_sqlite, root / "site.sqlite")
    with environment(DATABASE_URL=f"sqlite:///{root / 'site.sqlite'}",
                     INSTANCE_PATH=root / "instance", CELERY_BROKER_URL="memory://",
                     SMTP_URL=f"smtp://127.0.0.1:{smtp_session[0].port}",
                     SECRET_KEY="property-secret", BASE_URL="http://127.0.0.1:8000"):
        settings = Settings.from_env()
    services = build(settings, "inline")
    app = create_app(settings=settings, services=services)
    app.config["PROPAGATE_EXCEPTIONS"] = True  # an error raises here with its traceback
    now = datetime.now(UTC)
    with services.database.unit_of_work() as uow:
        lead = uow.session.scalar(select(Submission.id).join(Partner).where(
            Partner.name == "Stadt Solingen"))
        part = uow.session.scalar(select(MemberPart.id).join(
            Partner, Partner.id == MemberPart.partner_id).where(Partner.name == "Stadt Bochum"))
        part_submission = uow.session.get(MemberPart, part).submission_id
        other = uow.session.scalar(select(Submission.id).join(Partner).where(
            Partner.name == "Partner 00002"))
        tokens = {"lead": issue_link_token(uow, load_submission(uow, lead),
                                           notification_id=None, now=now),
                  "member": issue_link_token(uow, load_submission(uow, part_submission),
                                             notification_id=None, now=now,
                                             member_part_id=part),
                  "other": issue_link_token(uow, load_submission(uow, other),
                                            notification_id=None, now=now)}
        uow.commit()
    yield Site(app, services, settings.uploads_dir, tokens, {"lead": lead, "member": part})
    services.database.dispose()


def stored(site: Site, who: str) -> tuple[dict | None, int]:
    with site.services.database.unit_of_work() as uow:
        if who == "lead":
            row = uow.session.get(Submission, site.targets["lead"])
        else:
            row = uow.session.get(MemberPart, site.targets["member"])
        return row.answers, row.version


def attachments(site: Site) -> set[int]:
    with site.services.database.unit_of_work() as uow:
        return set(uow.session.scalars(select(Attachment.id)))


def files_on_disk(site: Site) -> set[str]:
    return {p.name for p in site.uploads.iterdir()} if site.uploads.exists() else set()


def page_tokens(client, token):
    page = client.get(f"/r/{token}/form")
    assert page.status_code == 200, page.status_code
    html = page.get_data(as_text=True)
    return (re.search(r'name="csrf_token" value="([^"]+)"', html).group(1),
            re.search(r'name="version" value="(-?\d+)"', html).group(1))


def post(client, path, data):
    builder = EnvironBuilder(path=path, method="POST", data=data,
                             content_type="multipart/form-data")
    environ = builder.get_environ()
    try:  # a large body is spooled to a temporary file that nobody else closes
        return client.open(environ)
    finally:
        environ["wsgi.input"].close()
        builder.close()


def as_int(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        return -1


def accepted(question: dict, upload: tuple[bytes, str, str]) -> bool:
    content = upload[0]
    magic = [ALLOWED_UPLOADS[t] for t in question.get("accept") or ALLOWED_UPLOADS]
    return (0 < len(content) <= question.get("max_bytes", 5 * 1024 * 1024)
            and content.startswith(tuple(magic)))


def expected_answers(posted: dict, files: dict, previous: dict | None,
                     new_ids: dict) -> dict:
    """What the draft must hold afterwards: every field as typed (only line ends unified, control
    bytes other than tab and newline dropped, short fields trimmed, everything cut at the field
    limit), files as their stored ids."""
    expected = {}
    posted = {key: [v.replace("\x00", "") for v in value] if isinstance(value, list)
              else value.replace("\x00", "") if isinstance(value, str) else value
              for key, value in posted.items()}  # no posted field keeps a NUL (web/forms.py)
    for q in QUESTIONS:
        value = posted.get(q["id"])
        if q["type"] == "file":
            keep = posted.get(q["id"] + "__keep") or (previous or {}).get(q["id"])
            if q["id"] in new_ids:
                expected[q["id"]] = str(new_ids[q["id"]])
            elif keep and posted.get(q["id"] + "__remove") != "1":
                expected[q["id"]] = str(keep)
        elif q["type"] == "multiple_choice":
            expected[q["id"]] = [v[:200] for v in value or []][:50]
        else:
            text = "".join(c for c in (value or "").replace("\r\n", "\n")
                           if c in "\t\n\r" or not (c < " " or c == "\x7f"))[:FIELD_LIMIT + 1]
            expected[q["id"]] = text if q["type"] == "long_text" else text.strip()
    return expected


@st.composite
def submissions(draw):
    """A whole form as a browser (or anything else) could post it."""
    posted = {}
    for q in QUESTIONS:
        if draw(st.integers(0, 5)) == 0:
            continue  # left out (an unchecked radio button is not sent at all)
        if q["type"] == "multiple_choice":
            posted[q["id"]] = draw(choices_for(q))
        elif q["type"] != "file":
            posted[q["id"]] = draw(answer_for(q))
    files = {}
    for q in (q for q in QUESTIONS if q["type"] == "file"):
        if draw(st.booleans()):
            files[q["id"]] = draw(uploads().filter(lambda u: FIELD_NAME_SAFE.match(u[1])))
        if draw(st.integers(0, 3)) == 0:
            posted[q["id"] + "__keep"] = draw(st.sampled_from(["1", "99999", "-1"]) | text_words)
        if draw(st.integers(0, 3)) == 0:
            posted[q["id"] + "__remove"] = draw(st.sampled_from(["1", "0", "on"]) | text_words)
    return posted, files


VERSIONS = st.one_of(st.just(None), st.just(None), st.just(None), st.integers(-3, 300).map(str),
                     st.sampled_from(["", "x", " 1 ", "١", "1e3", "9" * 5000, "1.0"]),
                     tricky_text)


@property_settings(40, fixtures=True)
@given(who=st.sampled_from(["lead", "member"]), form=submissions(),
       action=st.sampled_from(ACTIONS) | text_words, version=VERSIONS,
       language=st.sampled_from([None, "de", "en"]))
@example(who="lead", form=({"staff_total": "1200", "staff_immigration_share": "18,5",
                            "share_surveyed": "yes", "share_method": "survey",
                            "staff_trained": "140", "trainees_total": "40",
                            "trainees_immigration": "12", "selection_criterion": "yes",
                            "plans_next_year": "Mentoring."},
                           {"selection_document": (b"GIF89a", "bild.gif", "image/gif")}),
         action="review", version=None, language=None)  # a refused file on a complete form
def test_any_input_in_every_field_is_kept_and_answered_with_messages(site, who, form, action,
                                                                     version, language):
    posted, files = form
    client = site.app.test_client()
    token = site.tokens[who]
    if language:
        csrf, _ = page_tokens(client, token)
        assert client.post("/language", data={"csrf_token": csrf, "lang": language,
                                              "next": f"/r/{token}/form"}).status_code == 303
    language = language or "de"
    csrf, current = page_tokens(client, token)
    previous, version_before = stored(site, who)
    ids_before, disk_before = attachments(site), files_on_disk(site)
    data = {**posted, "csrf_token": csrf, "action": action,
            "version": current if version is None else version}
    data.update({q: (io.BytesIO(content), name, kind) for q, (content, name, kind)
                 in files.items()})

    response = post(client, f"/r/{token}/form", data)
    event(f"{who} {action if action in ACTIONS else 'other'}: {response.status_code}")

    assert response.status_code in (200, 303, 409, 422), response.status_code
    html = response.get_data(as_text=True)
    answers, version_after = stored(site, who)
    if as_int(data["version"]) != int(current):
        assert response.status_code == 409, "a stale version must not overwrite the draft"
        assert "Jemand anderes" in html or "Someone else" in html
        assert (answers, version_after) == (previous, version_before)
        assert attachments(site) == ids_before and files_on_disk(site) == disk_before
        return
    assert response.status_code != 409

    # The raw input is the draft, whatever it is; a refused file leaves nothing behind.
    new = attachments(site) - ids_before
    new_ids = {}
    with site.services.database.unit_of_work() as uow:
        for attachment in uow.session.scalars(select(Attachment).where(Attachment.id.in_(new))):
            new_ids[attachment.question_id] = attachment.id
    wanted_files = {q for q, upload in files.items()
                    if accepted(next(x for x in QUESTIONS if x["id"] == q), upload)}
    assert set(new_ids) == wanted_files
    assert len(files_on_disk(site) - disk_before) == len(wanted_files)
    assert answers == expected_answers(posted, files, previous, new_ids)
    assert version_after == version_before + 1

    # Every problem is a message: the field's own, and a refused file's.
    refused = [q for q in files if q not in wanted_files]
    complete = action in ("review", "complete")
    errors = check(DEFINITION, answers, complete=complete, language=language)
    if action == "autosave":
        assert response.status_code == 200 and response.is_json
        return
    if refused:
        assert response.status_code == 422, "a refused file must be said, not dropped"
        assert any(message in html for message in REFUSED_FILE[language])
    if response.status_code == 303:
        assert not errors or not complete and not check(DEFINITION, answers, complete=False)
        follow = client.get(response.headers["Location"])
        assert follow.status_code in ((200, 404) if who == "member" else (200,))
        return
    assert response.status_code == 422
    assert 'id="error-summary"' in html
    shown = check(DEFINITION, answers, complete=False, language=language)
    if action == "review" or (action == "complete" and not shown and not refused):
        shown = errors
    for question_id, message in shown.items():
        assert f'href="#{question_id}"' in html, question_id
        assert str(escape(message)) in html, message


@property_settings(40, fixtures=True)
@given(lang=st.sampled_from(["de", "en", "", "fr", "EN", "de\n"]) | tricky_text,
       target=st.one_of(st.just(None), st.sampled_from([
           "/", "/r/x/form", "//evil.example", "/\\evil.example", "/\t/evil.example",
           "/\n/evil.example", "https://evil.example/", "/%0d%0aSet-Cookie:x=1", "/r/\x00",
           "/\r\nX-Injected: 1", "javascript:alert(1)"]), tricky_text.map(lambda t: "/" + t),
           tricky_text))
@example(lang="en", target="/\n")  # a line break in "next": a header value
@example(lang="en", target="/\t/evil.example")  # the browser drops the tab: //evil.example
def test_any_language_choice_goes_back_to_a_page_of_this_site(site, lang, target):
    client = site.app.test_client()
    csrf, _ = page_tokens(client, site.tokens["lead"])
    data = {"csrf_token": csrf, "lang": lang}
    if target is not None:
        data["next"] = target
    response = client.post("/language", data=data)
    assert response.status_code == 303
    location = response.headers["Location"]
    # What a browser makes of it (WHATWG URL parsing drops tabs and line breaks and reads a
    # backslash as a slash): a path on this site, never another host.
    seen = re.sub(r"[\t\n\r]", "", location).replace("\\", "/")
    assert seen.startswith("/") and not seen.startswith("//"), location
    page = client.get(f"/r/{site.tokens['lead']}/form")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert f'<html lang="{lang if lang in ("de", "en") else "de"}"' in html


SHOWN_AGAIN = {"extension": ("proposed_due", "reason"), "intent": ("until", "reason")}
DATES_TYPED = st.one_of(st.dates().map(lambda d: d.isoformat()),
                        st.sampled_from(["2027-06-01", "2027-05-02", "2028-06-01", "2026-01-01",
                                         "9999-12-31", "0001-01-01", "31.05.2027", "", " "]),
                        tricky_text)


@property_settings(30, fixtures=True)
@given(page=st.sampled_from(["extension", "intent"]),
       fields=st.one_of(
           st.sampled_from([  # accepted (coordinators are mailed)
               {"proposed_due": "2027-06-01", "reason": "Krankheit"},
               {"intent": "will_submit_by", "until": "2027-05-15"},
               {"intent": "cannot_report", "reason": "Auflösung der Stelle"}]),
           st.fixed_dictionaries({}, optional={
               "proposed_due": DATES_TYPED, "until": DATES_TYPED,
               "intent": st.sampled_from(["will_submit_by", "cannot_report"]) | tricky_text,
               "reason": st.one_of(tricky_text, huge(1995, 2005), st.just("Krankheit"))})))
def test_the_extension_and_intent_forms_answer_any_input_with_a_page_or_a_message(site, page,
                                                                                 fields):
    client = site.app.test_client()
    token = site.tokens["other"]
    form = client.get(f"/r/{token}/{page}")
    assert form.status_code == 200
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.get_data(as_text=True)).group(1)
    response = post(client, f"/r/{token}/{page}", {"csrf_token": csrf, **fields})
    event(f"{page}: {response.status_code}")
    assert response.status_code in (303, 422), response.status_code
    if response.status_code == 422:
        html = response.get_data(as_text=True)
        assert 'class="error-summary"' in html
        if page == "extension" and "noch vor." in html:
            # An earlier example's request waits for its decision: no form for a second one.
            assert 'name="proposed_due"' not in html
            return
        for name in SHOWN_AGAIN[page]:  # what was typed is still in the form
            assert str(escape(fields.get(name, ""))) in html, name


@property_settings(100)
@given(definition=mutated(TEMPLATE),
       answers=st.dictionaries(st.sampled_from([q["id"] for q in QUESTIONS]), any_answer),
       last_year=st.dictionaries(st.sampled_from([q["id"] for q in QUESTIONS]), any_answer))
@example(definition={"year": 2029, "sections": [{"id": "s", "questions": [
    {"id": "a", "type": "count", "label": {"de": "A"}, "decimals": "z"}]}]},
    answers={"a": "5"}, last_year={})  # a template taken in that the form cannot check
def test_a_template_that_loads_can_check_and_show_any_answer(definition, answers, last_year):
    """`templates load` refuses a template or takes one whose every field the form can check
    and show, whatever is typed into it: what it takes in is what the partner's page runs on."""
    try:
        template = ReportTemplateDef.from_dict(definition)
    except InvalidInput:
        return
    answers = read_form(template, MultiDict(answers))  # as the form keeps them
    last_year = read_form(template, MultiDict(last_year))
    for complete in (False, True):
        assert all(isinstance(m, str) and m for m in check(
            template, answers, complete=complete).values())
    jumps(template, answers, last_year)
    for question in template.questions:
        display(question, answers.get(question.id), "de")
