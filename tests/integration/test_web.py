"""The small web surface of the engine: health, overview and the partner link page."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tests.integration.conftest import seed_programme
from tests.integration.test_cycle_engine import open_2027, submission_ids
from tests.support.sign_in import make_account, sign_in
from web import create_app
from workflow.models import AccessToken
from workflow.submissions import issue_link_token, load_submission


@pytest.fixture
def client(services):
    app = create_app(settings=services.settings, services=services)
    return app.test_client()


def new_link(services, submission_id):
    with services.database.unit_of_work() as uow:
        token = issue_link_token(uow, load_submission(uow, submission_id), notification_id=None,
                                 now=datetime.now(UTC))
        uow.commit()
    return token


def test_health_and_overview_show_the_cycle(client, services):
    seed_programme(services, partners=3)
    open_2027(services)
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/").headers["Location"] == "/login"  # the overview is for coordinators
    make_account(services, "koordination@example.org")
    sign_in(client, "koordination@example.org")
    page = client.get("/").get_data(as_text=True)
    assert "Berichtsjahr 2027" in page and "eingeladen" in page


def test_opening_a_link_changes_nothing_until_a_person_starts_the_report(client, services):
    seed_programme(services, partners=1)
    open_2027(services)
    [sid] = submission_ids(services)
    token = new_link(services, sid)
    page = client.get(f"/r/{token}")
    assert page.status_code == 200 and page.headers["Referrer-Policy"] == "no-referrer"
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert load_state(services, sid) == "invited"  # a mail scanner's pre-click is harmless

    forged = client.post(f"/r/{token}/submit", data={"csrf_token": "forged"})
    assert forged.status_code == 400 and "Formular abgelaufen" in forged.get_data(as_text=True)
    assert load_state(services, sid) == "invited"

    csrf = page.get_data(as_text=True).split('name="csrf_token" value="')[1].split('"')[0]
    started = client.post(f"/r/{token}/start", data={"csrf_token": csrf})
    assert started.status_code == 303 and started.headers["Location"].endswith("/form")
    assert load_state(services, sid) == "opened"  # "opened" is a person's click on a button


def test_unknown_and_expired_links_get_friendly_pages(client, services):
    seed_programme(services, partners=1)
    open_2027(services)
    [sid] = submission_ids(services)
    assert client.get("/r/not-a-real-token").status_code == 404
    assert client.get("/r/" + "x" * 500).status_code == 404
    token = new_link(services, sid)
    with services.database.unit_of_work() as uow:
        row = uow.session.scalars(select(AccessToken)).one()
        row.expires_at = datetime.now(UTC) - timedelta(days=1)
        uow.commit()
    expired = client.get(f"/r/{token}")
    page = expired.get_data(as_text=True)
    assert expired.status_code == 410 and "Koordinierungsstelle" in page
    # It names whom to ask and promises no resend that nobody would carry out.
    assert 'href="mailto:koordination@example.org"' in page and "schickt" not in page


def load_state(services, sid):
    with services.database.unit_of_work() as uow:
        return str(load_submission(uow, sid).state)




@pytest.mark.parametrize("language, expected, singular", [
    ("de", "&lt;b&gt;Köln&lt;/b&gt;: 3 Partner gefunden", "3 Partner gefunden"),
    ("en", "&lt;b&gt;Köln&lt;/b&gt;: 3 partners found", "3 partner found"),
])
def test_page_translations_escape_their_variables_and_take_any_name(services, language,
                                                                    expected, singular):
    """The pages' gettext and ngettext (bound once per page) behave like Jinja's: the
    translation in the page's language, every variable escaped, any variable name allowed."""
    app = create_app(settings=services.settings, services=services)
    template = ('{{ string }}: {{ ngettext("%(num)d Partner gefunden", "%(num)d Partner '
                'gefunden", 3) }}|{{ _("%(string)s", string=string) }}|'
                '{{ ngettext("%(num)d Partner gefunden", "%(num)d Partner gefunden", 1, '
                'num=3) }}')
    with app.test_request_context("/"):
        from flask import render_template_string, session
        session["lang"] = language
        shown = render_template_string(template, string="<b>Köln</b>")
    first, second, third = shown.split("|")
    assert first == expected
    assert second == "&lt;b&gt;Köln&lt;/b&gt;"
    assert third == singular  # the form for 1, with the num given
