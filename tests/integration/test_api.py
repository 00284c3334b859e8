"""The read-only JSON API: a token per account, stored hashed, refused when unknown or revoked."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select, text

from tests.integration.conftest import seed_programme
from tests.integration.test_cycle_engine import open_2027, submission_ids
from tests.integration.test_exports import submit
from tests.support.sign_in import csrf_token, signed_in_client
from web import create_app
from workflow.models import ApiToken, Event

TOKEN = re.compile(r'id="new-token" type="text" readonly value="(rc_[A-Za-z0-9_-]+)"')


@pytest.fixture
def app(services):
    return create_app(settings=services.settings, services=services)


@pytest.fixture
def cycle(services):
    seed_programme(services, partners=5)
    cycle_id = open_2027(services)
    submit(services, submission_ids(services)[1], staff_total="900")
    return cycle_id


def new_token(client, name="Ministerium, Referat 3"):
    page = client.get("/account/tokens").get_data(as_text=True)
    response = client.post("/account/tokens", data={"csrf_token": csrf_token(page),
                                                     "name": name})
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    return TOKEN.search(response.get_data(as_text=True)).group(1), response


def test_a_token_reads_cycles_and_submissions_and_is_stored_only_hashed(app, services, cycle):
    coordinator = signed_in_client(app, services, "koordination@example.org")
    token, _ = new_token(coordinator)
    api = app.test_client()  # no session: the token alone
    auth = {"Authorization": f"Bearer {token}"}

    cycles = api.get("/api/v1/cycles", headers=auth)
    assert cycles.status_code == 200
    [listed] = cycles.json
    assert listed["id"] == cycle and listed["year"] == 2027 and listed["partners"] == 5
    assert listed["by_state"]["submitted"] == 1

    first = api.get(f"/api/v1/cycles/{cycle}/submissions?limit=2", headers=auth).json
    assert len(first["items"]) == 2 and first["next_after"] == first["items"][-1]["id"]
    rest = api.get(f"/api/v1/cycles/{cycle}/submissions?limit=2&after={first['next_after']}",
                   headers=auth).json
    seen = [i["id"] for i in first["items"] + rest["items"]]
    assert seen == sorted(seen) and len(set(seen)) == 4
    submitted = api.get(f"/api/v1/cycles/{cycle}/submissions?state=submitted&answers=1",
                        headers=auth).json["items"]
    assert [s["answers"]["staff_total"] for s in submitted] == ["900"]
    one = api.get(f"/api/v1/submissions/{submitted[0]['id']}", headers=auth).json
    assert one["state"] == "submitted" and one["partner"]["name"].startswith("Partner ")

    with services.database.unit_of_work() as uow:
        stored = uow.session.scalars(select(ApiToken)).one()
        dump = " ".join(str(v) for v in uow.session.execute(
            text("SELECT * FROM api_token")).one())
        assert token not in dump and stored.token_hash != token
        assert stored.last_used_at is not None and token.startswith(stored.prefix)


def test_no_unknown_malformed_or_revoked_token_gets_in(app, services, cycle):
    api = app.test_client()
    assert api.get("/api/v1/cycles").status_code == 401
    assert api.get("/api/v1/cycles").headers["WWW-Authenticate"].startswith("Bearer")
    for header in ("Bearer rc_not-a-token", "Basic dXNlcjpwYXNz", "Bearer ", "rc_x"):
        response = api.get("/api/v1/cycles", headers={"Authorization": header})
        assert response.status_code == 401 and response.json["error"] == "unauthorized"

    coordinator = signed_in_client(app, services, "koordination@example.org")
    token, page = new_token(coordinator)
    auth = {"Authorization": f"Bearer {token}"}
    assert api.get("/api/v1/cycles", headers=auth).status_code == 200
    with services.database.unit_of_work() as uow:
        token_id = uow.session.scalar(select(ApiToken.id))
    revoked = coordinator.post(f"/account/tokens/{token_id}/revoke",
                               data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert revoked.status_code == 303
    assert api.get("/api/v1/cycles", headers=auth).status_code == 401
    assert "widerrufen" in coordinator.get("/account/tokens").get_data(as_text=True)
    with services.database.unit_of_work() as uow:
        events = uow.session.execute(select(Event.kind, Event.actor).where(
            Event.kind.in_(("api_token_issued", "api_token_revoked"))).order_by(Event.id)).all()
    assert [(str(k), a) for k, a in events] == [
        ("api_token_issued", "koordination@example.org"),
        ("api_token_revoked", "koordination@example.org")]


def test_bad_requests_and_unknown_ids_get_json_errors(app, services, cycle):
    coordinator = signed_in_client(app, services, "koordination@example.org")
    token, _ = new_token(coordinator)
    api, auth = app.test_client(), {"Authorization": f"Bearer {token}"}
    assert api.get("/api/v1/cycles/999", headers=auth).status_code == 404
    assert api.get("/api/v1/submissions/999", headers=auth).json["error"] == "not_found"
    for query in ("state=lost", "after=-1", "limit=abc", "after=99999999999999999999",
                  "after=99999999999", "after=²", "limit=١", "limit=0", "limit=501"):
        response = api.get(f"/api/v1/cycles/{cycle}/submissions?{query}", headers=auth)
        assert response.status_code == 400 and response.json["error"] == "bad_request", query
    assert "from 1 to 500" in api.get(f"/api/v1/cycles/{cycle}/submissions?limit=0",
                                      headers=auth).json["message"]
    # Beside the API's own routes too, an API client gets JSON, not a page.
    unknown = api.get("/api/v1/partners", headers=auth)
    assert (unknown.status_code, unknown.json["error"]) == (404, "not_found")
    wrong_method = api.post("/api/v1/cycles", headers=auth)
    assert (wrong_method.status_code, wrong_method.json["error"]) == (405, "method_not_allowed")


def test_a_token_needs_a_name_and_viewers_read_with_their_session_only(app, services, cycle):
    coordinator = signed_in_client(app, services, "koordination@example.org")
    page = coordinator.get("/account/tokens").get_data(as_text=True)
    response = coordinator.post("/account/tokens", data={"csrf_token": csrf_token(page),
                                                         "name": "   "})
    assert response.status_code == 422 and "Namen" in response.get_data(as_text=True)
    viewer = signed_in_client(app, services, "lesen@example.org", "viewer")
    assert viewer.get("/account/tokens").status_code == 403
    assert viewer.get("/api/v1/cycles").status_code == 200


def test_an_inactive_account_s_token_is_refused(app, services, cycle):
    coordinator = signed_in_client(app, services, "koordination@example.org")
    token, _ = new_token(coordinator)
    with services.database.unit_of_work() as uow:
        uow.session.execute(text("UPDATE user_account SET active = false"))
        uow.commit()
    response = app.test_client().get("/api/v1/cycles",
                                     headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_the_token_page_is_valid_html(app, services, tmp_path):
    from tests.support.nu_checker import nu_check
    coordinator = signed_in_client(app, services, "koordination@example.org")
    page = coordinator.get("/account/tokens")
    _, issued = new_token(coordinator)
    refused = coordinator.post("/account/tokens", data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "name": ""})
    files = []
    for name, response in {"empty": page, "issued": issued, "refused": refused}.items():
        files.append(tmp_path / f"{name}.html")
        files[-1].write_text(response.get_data(as_text=True), encoding="utf-8")
    problems = [m for m in nu_check(files) if m.type != "info" or m.is_warning]
    assert not problems, "\n".join(map(str, problems))
