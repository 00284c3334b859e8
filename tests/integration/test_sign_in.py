"""Coordinators' sign-in on the real Flask app, SQLite and PostgreSQL, mailing a real SMTP
server: sessions, wrong passwords, the rate limit, single-use links, roles, and every route of
the URL map refused to strangers and to viewers who would act."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import subprocess
import sys
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select, update
from werkzeug.routing import AnyConverter, IntegerConverter

from infra.settings import SmtpConfig
from tests.support.nu_checker import nu_check
from tests.support.servers import ROOT
from tests.support.sign_in import (PASSWORD, csrf_token, make_account, sign_in,
                                   signed_in_client)
from web import create_app
from workflow.models import AccountLink, LinkPurpose, UserAccount, utcnow
from workflow.users import ensure_demo_account, issue_link

LINK = re.compile(r"http://127\.0\.0\.1:8000(/login/link/[A-Za-z0-9_-]{43})")


@pytest.fixture
def app(services, tmp_path):
    # With the embedded demo's mailbox pages, so that the URL walk covers them too.
    # (Its mail still goes to the real SMTP server: only the pages read the Maildir.)
    settings = dataclasses.replace(services.settings,
                                   smtp=SmtpConfig("maildir", path=str(tmp_path / "maildir")))
    return create_app(settings=settings, services=dataclasses.replace(services, settings=settings),
                      show_mailbox=True)


def signed_in(client) -> bool:
    response = client.get("/")
    return response.status_code == 200


def link_mails(smtp, to):
    with smtp[1].lock:
        messages = [m["message"] for m in smtp[1].messages]
    return [m for m in messages if to in m["To"]]


def link_in(message) -> str:
    return LINK.search(message.get_body(("plain",)).get_content()).group(1)


def test_sign_in_and_out(app, services):
    make_account(services, "koordination@example.org", "coordinator")
    client = app.test_client()
    assert client.get("/").headers["Location"] == "/login"
    assert client.get("/mailbox/?a=1").headers["Location"] == "/login?next=/mailbox/?a%3D1"

    wrong = sign_in(client, "koordination@example.org", "falsches Passwort!!")
    assert wrong.status_code == 422
    assert "E-Mail-Adresse oder Passwort stimmt nicht." in wrong.get_data(as_text=True)
    assert not signed_in(client)
    unknown = sign_in(client, "niemand@example.org", "falsches Passwort!!")
    assert unknown.get_data(as_text=True).count("stimmt nicht") == \
        wrong.get_data(as_text=True).count("stimmt nicht")  # no account is named

    # The address is found whatever its case; the next page is the one asked for, on this site.
    response = sign_in(client, " Koordination@Example.org", next="/mailbox/")
    assert response.status_code == 303 and response.headers["Location"] == "/mailbox/"
    page = client.get("/").get_data(as_text=True)
    assert "koordination@example.org" in page and "Abmelden" in page
    assert client.get("/login").headers["Location"] == "/"  # already signed in

    token = csrf_token(page)
    out = client.post("/logout", data={"csrf_token": token})
    assert out.status_code == 303 and out.headers["Location"] == "/login"
    assert not signed_in(client)

    for elsewhere in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        response = sign_in(app.test_client(), "koordination@example.org", next=elsewhere)
        assert response.headers["Location"] == "/", elsewhere


def test_a_new_password_ends_the_sessions_signed_in_with_the_old_one(app, services):
    first = signed_in_client(app, services, "koordination@example.org")
    with services.database.unit_of_work() as uow:
        account = uow.session.scalars(select(UserAccount)).one()
        token = issue_link(uow, account.id, LinkPurpose.RESET, now=utcnow(), actor="test").token
        other = issue_link(uow, account.id, LinkPurpose.INVITE, now=utcnow(), actor="test").path
        uow.commit()
    second = app.test_client()
    form = second.get(f"/login/link/{token}").get_data(as_text=True)
    done = second.post(f"/login/link/{token}", data={
        "csrf_token": csrf_token(form), "password": "ein ganz neues Passwort",
        "password2": "ein ganz neues Passwort"})
    assert done.status_code == 303 and signed_in(second)
    assert not signed_in(first)
    assert app.test_client().get(other).status_code == 410  # every open link closed
    assert sign_in(app.test_client(), "koordination@example.org").status_code == 422
    assert sign_in(app.test_client(), "koordination@example.org",
                   "ein ganz neues Passwort").status_code == 303


def test_a_session_lasts_twelve_hours_at_most(app, services):
    client = signed_in_client(app, services, "koordination@example.org")
    with client.session_transaction() as session:
        session["signed_in_at"] -= 11 * 3600
    assert signed_in(client)
    with client.session_transaction() as session:
        session["signed_in_at"] -= 2 * 3600
    assert client.get("/").headers["Location"] == "/login"
    assert not signed_in(client)


def test_failed_sign_ins_of_an_account_are_limited_but_its_usual_browser_gets_in(app, services):
    usual = signed_in_client(app, services, "koordination@example.org")
    usual.post("/logout", data={"csrf_token": csrf_token(usual.get("/").get_data(as_text=True))})

    attacker = app.test_client()
    attacker.environ_base["REMOTE_ADDR"] = "203.0.113.7"
    for _ in range(10):
        assert sign_in(attacker, "koordination@example.org", "geraten geraten").status_code == 422
    blocked = sign_in(attacker, "koordination@example.org", PASSWORD)
    # Over the limit no password is checked, not even the right one: else guessing goes on.
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    assert "Zu viele fehlgeschlagene Anmeldeversuche" in blocked.get_data(as_text=True)
    assert not signed_in(attacker)
    other_place = app.test_client()
    other_place.environ_base["REMOTE_ADDR"] = "198.51.100.9"
    assert sign_in(other_place, "koordination@example.org", PASSWORD).status_code == 429

    # The browser that signed in before carries its signed cookie: its owner is not locked out.
    assert sign_in(usual, "koordination@example.org", PASSWORD).status_code == 303
    assert signed_in(usual)


def test_failed_sign_ins_from_one_address_are_limited(app, services):
    make_account(services, "koordination@example.org")
    guesser = app.test_client()
    guesser.environ_base["REMOTE_ADDR"] = "2001:db8:1:2::17"
    for n in range(20):
        assert sign_in(guesser, f"person{n}@example.org", "geraten geraten").status_code == 422
    assert sign_in(guesser, "koordination@example.org", PASSWORD).status_code == 429
    neighbour = app.test_client()  # the same /64: the same client
    neighbour.environ_base["REMOTE_ADDR"] = "2001:db8:1:2::99"
    assert sign_in(neighbour, "koordination@example.org", PASSWORD).status_code == 429
    elsewhere = app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "2001:db8:1:3::1"
    assert sign_in(elsewhere, "koordination@example.org", PASSWORD).status_code == 303


def test_an_admin_invites_by_mail_and_the_link_works_once(app, services, smtp):
    admin = signed_in_client(app, services, "admin@example.org", "admin")
    form = admin.get("/users/new").get_data(as_text=True)
    created = admin.post("/users/new", data={
        "csrf_token": csrf_token(form), "email": "Neu@Example.org", "name": "Derya <b>Şahin</b>",
        "role": "coordinator", "language": "en"})
    assert created.status_code == 303 and created.headers["Location"] == "/users"
    listing = admin.get("/users").get_data(as_text=True)
    assert "Einladung an neu@example.org geschickt" in listing and "Einladung offen" in listing
    assert "&lt;b&gt;Şahin&lt;/b&gt;" in listing  # a name is text, never markup

    [mail] = link_mails(smtp, "neu@example.org")
    assert mail["Subject"].startswith("Your access to the reporting system")
    assert mail["X-Reportcycles-Rung"] == "account_invite"
    path = link_in(mail)
    html = mail.get_body(("html",)).get_content()
    assert f'href="http://127.0.0.1:8000{path}"' in html and "&lt;b&gt;" in html
    token = path.rsplit("/", 1)[1]
    with services.database.unit_of_work() as uow:
        link = uow.session.scalars(select(AccountLink)).all()[-1]
        assert link.token_hash == hashlib.sha256(token.encode()).hexdigest()  # only the hash
        assert link.expires_at - link.created_at == timedelta(hours=24)

    person = app.test_client()
    opened = person.get(path)
    assert opened.status_code == 200 and person.get(path).status_code == 200  # opening is free
    token_field = csrf_token(opened.get_data(as_text=True))
    short = person.post(path, data={"csrf_token": token_field, "password": "zu kurz",
                                    "password2": "zu kurz"})
    assert short.status_code == 422
    assert "mindestens 12 Zeichen" in short.get_data(as_text=True)
    mismatch = person.post(path, data={"csrf_token": token_field, "password": PASSWORD,
                                       "password2": PASSWORD + "!"})
    assert mismatch.status_code == 422 and "stimmen nicht überein" in mismatch.get_data(
        as_text=True)
    done = person.post(path, data={"csrf_token": token_field, "password": PASSWORD,
                                   "password2": PASSWORD})
    assert done.status_code == 303 and signed_in(person)

    again = app.test_client()
    assert again.get(path).status_code == 410
    assert again.post(path, data={"csrf_token": csrf_token(again.get("/login").get_data(
        as_text=True)), "password": "noch ein Passwort!", "password2": "noch ein Passwort!"}
    ).status_code == 410
    assert sign_in(again, "neu@example.org", PASSWORD).status_code == 303


def test_an_invitation_that_cannot_be_sent_is_said_so_and_can_be_sent_again(
        app, services, smtp):
    admin = signed_in_client(app, services, "admin@example.org", "admin")
    smtp[1].fail_next.append("554 no thanks")
    created = admin.post("/users/new", data={
        "csrf_token": csrf_token(admin.get("/users/new").get_data(as_text=True)),
        "email": "neu@example.org", "role": "viewer"}, follow_redirects=True)
    assert "konnte nicht versendet werden" in created.get_data(as_text=True)
    assert link_mails(smtp, "neu@example.org") == []
    with services.database.unit_of_work() as uow:
        account_id = uow.session.scalar(select(UserAccount.id).where(
            UserAccount.email == "neu@example.org"))
    again = admin.post(f"/users/{account_id}/invite", data={
        "csrf_token": csrf_token(created.get_data(as_text=True))}, follow_redirects=True)
    assert "Einladung an neu@example.org geschickt" in again.get_data(as_text=True)
    assert len(link_mails(smtp, "neu@example.org")) == 1


def test_a_forgotten_password_is_reset_by_a_link_that_lasts_an_hour(app, services, smtp):
    make_account(services, "koordination@example.org")
    client = app.test_client()
    token = csrf_token(client.get("/login/forgot").get_data(as_text=True))
    asked = client.post("/login/forgot", data={"csrf_token": token,
                                               "email": "koordination@example.org"})
    nobody = client.post("/login/forgot", data={"csrf_token": token,
                                                "email": "niemand@example.org"})
    assert asked.status_code == nobody.status_code == 200
    assert asked.get_data(as_text=True) == nobody.get_data(as_text=True)  # names no account
    [mail] = link_mails(smtp, "koordination@example.org")
    assert mail["Subject"].startswith("Neues Passwort")
    assert len(smtp[1].messages) == 1
    path = link_in(mail)
    with services.database.unit_of_work() as uow:
        link = uow.session.scalars(select(AccountLink)).one()
        assert link.purpose == LinkPurpose.RESET
        assert link.expires_at - link.created_at == timedelta(hours=1)
        uow.session.execute(update(AccountLink).values(expires_at=utcnow() - timedelta(
            seconds=1)))
        uow.commit()
    expired = client.get(path)
    assert expired.status_code == 410 and "Einen neuen Link anfordern" in expired.get_data(
        as_text=True)
    assert client.get("/login/link/" + "x" * 43).status_code == 404

    # A few mails per account and window at most: the form cannot flood an inbox.
    for _ in range(5):
        client.post("/login/forgot", data={"csrf_token": token,
                                           "email": "koordination@example.org"})
    assert len(link_mails(smtp, "koordination@example.org")) == 3


def test_the_console_sign_in_link_signs_in_once(app, services):
    with services.database.unit_of_work() as uow:
        account, created = ensure_demo_account(uow, "koordination@example.org", now=utcnow())
        path = issue_link(uow, account.id, LinkPurpose.SIGN_IN, now=utcnow(),
                          actor="run").path
        uow.commit()
    assert created and account.role == "admin"
    client = app.test_client()
    response = client.get(path)
    assert response.status_code == 303 and response.headers["Location"] == "/"
    assert signed_in(client) and client.get("/users").status_code == 200
    assert app.test_client().get(path).status_code == 410
    with services.database.unit_of_work() as uow:
        assert ensure_demo_account(uow, "koordination@example.org", now=utcnow())[1] is False
        assert ensure_demo_account(uow, "andere@example.org", now=utcnow()) == (None, False)


def test_roles_viewers_look_coordinators_act_admins_manage_accounts(app, services):
    viewer = signed_in_client(app, services, "viewer@example.org", "viewer")
    coordinator = signed_in_client(app, services, "coordinator@example.org", "coordinator")
    admin = signed_in_client(app, services, "admin@example.org", "admin")
    for client in (viewer, coordinator, admin):
        assert client.get("/").status_code == 200 and client.get("/mailbox/").status_code == 200
    assert viewer.get("/users").status_code == 403
    assert coordinator.get("/users").status_code == 403
    assert admin.get("/users").status_code == 200
    token = csrf_token(viewer.get("/").get_data(as_text=True))
    refused = viewer.post("/users/new", data={"csrf_token": token, "email": "x@example.org",
                                              "role": "admin"})
    assert refused.status_code == 403 and "Keine Berechtigung" in refused.get_data(as_text=True)
    # Looking around is allowed: the language and signing out are not acting.
    assert viewer.post("/language", data={"csrf_token": token, "lang": "en",
                                          "next": "/"}).status_code == 303
    assert "Sign out" in viewer.get("/").get_data(as_text=True)
    assert viewer.post("/logout", data={"csrf_token": token}).status_code == 303
    assert not signed_in(viewer)


PUBLIC = {"static", "public.healthz", "switch_language", "auth.sign_in", "auth.sign_out",
          "auth.forgot", "auth.link"}


def sample_value(converter, number=1):
    if isinstance(converter, IntegerConverter):
        return number
    if isinstance(converter, AnyConverter):
        return sorted(converter.items)[0]
    return "x"


def sample_url(rule, number=1) -> str:
    values = {name: sample_value(rule._converters[name], number) for name in rule.arguments}
    return rule.build(values, append_unknown=False)[1]


def test_every_route_refuses_strangers_and_viewers_who_would_act(app, services):
    rules = list(app.url_map.iter_rules())
    open_to_all = {r.endpoint for r in rules if r.endpoint in PUBLIC or
                   r.endpoint.startswith("partner.")}
    # Anything new that is open to everyone must be added here on purpose.
    assert open_to_all - {r for r in open_to_all if r.startswith("partner.")} == PUBLIC
    guarded = [r for r in rules if r.endpoint not in open_to_all]
    assert {"overview.index", "mailbox.index", "mailbox.show", "auth.users",
            "auth.new_user"} <= {r.endpoint for r in guarded}

    stranger = app.test_client()
    token = csrf_token(stranger.get("/login").get_data(as_text=True))
    for rule in guarded:
        url = sample_url(rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = stranger.open(url, method=method, data={"csrf_token": token})
            assert response.status_code in (303, 401, 403), (method, url, response.status_code)
            if response.status_code == 303:
                assert urlsplit(response.headers["Location"]).path == "/login", (method, url)

    viewer = signed_in_client(app, services, "viewer@example.org", "viewer")
    token = csrf_token(viewer.get("/").get_data(as_text=True))
    for rule in guarded:
        url = sample_url(rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = viewer.open(url, method=method, data={"csrf_token": token})
            if method == "GET":
                assert response.status_code in (200, 403, 404), (url, response.status_code)
                assert response.status_code != 403 or rule.endpoint.startswith("auth."), url
            else:
                assert response.status_code == 403, (method, url, response.status_code)

    # The open pages answer strangers without an error (the partner pages have their own tests).
    for rule in rules:
        if rule.endpoint in PUBLIC and "GET" in rule.methods:
            assert stranger.get(sample_url(rule)).status_code < 500, rule


def test_ids_beyond_the_databases_integers_are_not_found_on_every_route(app, services):
    # SQLite cannot even bind a number beyond 64 bits; PostgreSQL's ids end at 2**31 - 1.
    coordinator = signed_in_client(app, services, "koordination@example.org", "admin")
    token = csrf_token(coordinator.get("/").get_data(as_text=True))
    with_ids = [r for r in app.url_map.iter_rules()
                if any(isinstance(r._converters[name], IntegerConverter) for name in r.arguments)]
    assert len(with_ids) > 20
    for rule in with_ids:
        for number in (2**31, 2**63, 10**23):
            url = sample_url(rule, number)
            assert str(number) in url, url
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                response = coordinator.open(url, method=method, data={"csrf_token": token})
                # werkzeug checks a rule's method before its converter: where the same path
                # has a GET rule too, a POST learns that only GET would match (405)
                assert response.status_code in ((404,) if method == "GET" else (404, 405)), (
                    method, url, response.status_code)
                if not url.startswith("/api/"):
                    assert "<h1>" in response.get_data(as_text=True), url


def test_an_unexpected_error_gets_the_sites_own_page_in_the_pages_language(app, services):
    def fails():
        raise RuntimeError("a fault of ours")
    app.add_url_rule("/fails", view_func=fails)
    coordinator = signed_in_client(app, services, "koordination@example.org", "admin")
    response = coordinator.get("/fails")
    assert response.status_code == 500
    page = response.get_data(as_text=True)
    assert "Ein Fehler ist aufgetreten" in page and 'lang="de"' in page
    assert "a fault of ours" not in page and "Traceback" not in page


def test_users_create_and_list_on_the_command_line(app, services):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "reportcycles.cli", "users", *args],
                              cwd=ROOT, env=os.environ, capture_output=True, text=True,
                              timeout=120)

    created = cli("create", "Erste@Example.org", "--role", "admin", "--name", "Erste Person")
    assert created.returncode == 0, created.stderr
    assert "Konto erste@example.org (admin) angelegt." in created.stdout
    path = LINK.search(created.stdout).group(1)
    listed = cli("list")
    assert "erste@example.org" in listed.stdout and "Einladung offen" in listed.stdout
    assert cli("create", "erste@example.org", "--role", "viewer").returncode == 2
    assert cli("create", "zweite@example.org", "--role", "chef").returncode == 2
    refused = cli("create", "kein-at-zeichen", "--role", "viewer")
    assert refused.returncode == 2 and "Ungültige E-Mail-Adresse" in refused.stderr

    person = app.test_client()
    form = person.get(path).get_data(as_text=True)
    assert "erste@example.org" in form
    assert person.post(path, data={"csrf_token": csrf_token(form), "password": PASSWORD,
                                   "password2": PASSWORD}).status_code == 303
    assert person.get("/users").status_code == 200
    assert "Passwort gesetzt" in cli("list").stdout
    fresh = cli("link", "erste@example.org")
    assert fresh.returncode == 0 and LINK.search(fresh.stdout).group(1) != path
    # A name with terminal escape codes is kept without them: `list` prints names as they are.
    assert cli("create", "dritte@example.org", "--role", "viewer",
               "--name", "Dritte\x1b[31m Person\x07").returncode == 0
    listed = cli("list").stdout
    assert "\x1b" not in listed and "\x07" not in listed and "Dritte[31m Person" in listed


def test_sign_in_pages_are_valid_html(app, services, tmp_path, smtp):
    admin = signed_in_client(app, services, "admin@example.org", "admin")
    pages = {"users": admin.get("/users"), "user_new": admin.get("/users/new")}
    pages["user_new_errors"] = admin.post("/users/new", data={
        "csrf_token": csrf_token(pages["users"].get_data(as_text=True)), "email": ""})
    admin.post("/users/new", data={"csrf_token": csrf_token(pages["users"].get_data(
        as_text=True)), "email": "neu@example.org", "role": "viewer"})
    path = link_in(link_mails(smtp, "neu@example.org")[0])
    client = app.test_client()
    token = csrf_token(client.get("/login").get_data(as_text=True))
    pages.update({
        "sign_in": client.get("/login"),
        "sign_in_errors": client.post("/login", data={"csrf_token": token}),
        "forgot": client.get("/login/forgot"),
        "forgot_sent": client.post("/login/forgot", data={"csrf_token": token,
                                                          "email": "x@example.org"}),
        "set_password": client.get(path),
        "set_password_errors": client.post(path, data={"csrf_token": token, "password": "kurz",
                                                       "password2": "kurz"}),
        "link_gone": client.get("/login/link/" + "y" * 43),
    })
    files = []
    for name, response in pages.items():
        assert response.status_code < 500, name
        files.append(tmp_path / f"{name}.html")
        files[-1].write_text(response.get_data(as_text=True), encoding="utf-8")
    files.append(tmp_path / "mail.html")
    files[-1].write_text(link_mails(smtp, "neu@example.org")[0].get_body(("html",))
                         .get_content(), encoding="utf-8")
    problems = [m for m in nu_check(files) if m.type != "info"]
    assert not problems, "\n".join(map(str, problems))
