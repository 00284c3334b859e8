"""`reportcycles run` as `make run` starts it, driven by a real headless Chromium."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager

import pytest
from playwright.sync_api import expect

from tests.support.servers import ROOT, free_port, wait_for_port
from tests.support.sign_in import console_sign_in_link, signed_in_opener


CLI = [sys.executable, "-m", "reportcycles.cli"]


def make_run_env(tmp_path, port):
    """What `make run` sees on a fresh machine: no settings at all."""
    env = {**os.environ, "INSTANCE_PATH": str(tmp_path / "instance"),
           "BASE_URL": f"http://127.0.0.1:{port}"}
    for key in ("DATABASE_URL", "CELERY_BROKER_URL", "SMTP_URL", "SMTP_HOST"):
        env.pop(key, None)
    return env


@contextmanager
def make_run(tmp_path, port):
    """`reportcycles demo` then `reportcycles run`, as the Makefile does; yields demo's output."""
    env = make_run_env(tmp_path, port)
    demo = subprocess.run([*CLI, "demo"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert demo.returncode == 0, demo.stderr
    with open(tmp_path / "run.log", "ab") as log:
        proc = subprocess.Popen([*CLI, "run", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=60, proc=proc)
        yield demo.stdout
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.fixture
def embedded_app(tmp_path):
    port = free_port()
    with make_run(tmp_path, port):
        yield f"http://127.0.0.1:{port}"


def test_make_run_again_and_again_serves_the_same_demo(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with make_run(tmp_path, port) as first:
        get = console_get(tmp_path, base, earlier_runs=0)
        partners = int(re.search(r"(\d+) Partner angelegt", first).group(1))
        assert partners >= 29
        wait_for_mail_count(get, partners)  # one invitation each, all of them written
        assert "Zyklus 2027 geöffnet" in first
        assert "Koordinationskonto koordination@example.org (admin) angelegt" in first
        mails = mailbox_rows(get)
    with make_run(tmp_path, port) as second:
        assert "Demo-Daten früherer Läufe bleiben erhalten" in second
        assert "0 Partner angelegt" in second and "Zyklus 2027 besteht schon" in second
        assert "Koordinationskonto" not in second  # the same account, a fresh link
        get = console_get(tmp_path, base, earlier_runs=1)
        time.sleep(3)  # a sweep has run: nothing is sent twice
        assert mailbox_rows(get) == mails
    with make_run(tmp_path, port):
        assert urllib.request.urlopen(base + "/healthz").status == 200


def console_get(tmp_path, base, earlier_runs=0):
    """GET a page signed in with the one-time link this run printed on its console."""
    opener = signed_in_opener(console_sign_in_link(tmp_path / "run.log", skip=earlier_runs))
    return lambda path: opener.open(base + path).read().decode()


def mailbox_rows(get) -> int:
    return get("/mailbox/").count("<tr><td>")


def wait_for_mail_count(get, minimum, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        html = get("/mailbox/")
        if html.count("<tr><td>") >= minimum:
            return
        time.sleep(0.5)
    raise AssertionError(f"fewer than {minimum} mails in the local mailbox after {timeout}s")


def test_make_run_mode_delivers_invitations_to_the_local_mailbox(embedded_app, page, tmp_path):
    base = embedded_app
    page.goto(console_sign_in_link(tmp_path / "run.log"))  # lands on / signed in
    # the in-process worker delivered every invitation
    wait_for_mail_count(lambda path: page.request.get(base + path).text(), 29)

    page.goto(base + "/")
    expect(page.get_by_role("link", name="Berichtsjahr 2027")).to_be_visible()
    expect(page.get_by_role("row", name=re.compile("Berichtsjahr 2027"))).to_contain_text("29")

    page.goto(base + "/mailbox/")
    page.get_by_role("link", name=re.compile("Stadt Solingen")).first.click()
    link = page.locator("pre.mail a", has_text="/r/").first
    token_url = link.get_attribute("href")
    assert token_url.startswith(base + "/r/")

    page.goto(token_url)
    expect(page.get_by_role("heading", level=1)).to_contain_text("Stadt Solingen")
    expect(page.get_by_role("button", name="Bericht beginnen")).to_be_visible()

    # A tampered link gets a friendly 404 page, not an error.
    response = page.goto(token_url[:-3] + "xyz")
    assert response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Seite nicht gefunden")
