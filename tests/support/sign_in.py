"""Signing in from tests: accounts with a password, a Flask test client or a browser signed in,
and the one-time link that `reportcycles run` prints on its console."""
from __future__ import annotations

import http.cookiejar
import re
import time
import urllib.parse
import urllib.request
from pathlib import Path

from workflow.models import utcnow
from workflow.users import create_account, set_password

PASSWORD = "ein langes Passwort für Tests"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CONSOLE_LINK = re.compile(r"https?://[^\s]+/login/link/[A-Za-z0-9_-]+")


def csrf_token(html: str) -> str:
    return CSRF.search(html).group(1)


def make_account(services, email: str, role: str = "coordinator", password: str | None = PASSWORD,
                 language: str = "de"):
    """An account as if its person had already set ``password`` through the invitation."""
    with services.database.unit_of_work() as uow:
        account = create_account(uow, email, role, language=language, now=utcnow(),
                                 actor="test")
        if password is not None:
            account = set_password(uow, account.id, password, now=utcnow())
        uow.commit()
    return account


def sign_in(client, email: str, password: str = PASSWORD, **data):
    """POST the sign-in form as a browser would (with the page's CSRF token)."""
    token = csrf_token(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"csrf_token": token, "email": email,
                                       "password": password, **data})


def signed_in_client(app, services, email: str, role: str = "coordinator"):
    make_account(services, email, role)
    client = app.test_client()
    response = sign_in(client, email)
    assert response.status_code == 303, response.get_data(as_text=True)
    return client


def console_sign_in_link(log: Path, *, skip: int = 0, timeout: float = 30.0) -> str:
    """The newest one-time sign-in link `reportcycles run` printed into ``log``, after the first
    ``skip`` links (those of earlier runs into the same log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        links = CONSOLE_LINK.findall(log.read_text(encoding="utf-8", errors="replace")
                                     if log.exists() else "")
        if len(links) > skip:
            return links[-1]
        time.sleep(0.2)
    raise AssertionError(f"no sign-in link in {log} after {timeout}s")


def console_links_in(log: Path) -> int:
    return len(CONSOLE_LINK.findall(log.read_text(encoding="utf-8", errors="replace"))) \
        if log.exists() else 0


def signed_in_opener(link: str) -> urllib.request.OpenerDirector:
    """A urllib opener with the session cookie the console link gives."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with opener.open(link) as response:
        assert urllib.parse.urlsplit(response.url).path == "/", response.url
    return opener
