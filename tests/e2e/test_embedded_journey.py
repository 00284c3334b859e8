"""`reportcycles run` as `make run` starts it, driven by a real headless Chromium."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest
from playwright.sync_api import expect

from tests.support.servers import ROOT, free_port, wait_for_port


@pytest.fixture
def embedded_app(tmp_path):
    port = free_port()
    env = {**os.environ, "INSTANCE_PATH": str(tmp_path / "instance"),
           "BASE_URL": f"http://127.0.0.1:{port}"}
    for key in ("DATABASE_URL", "CELERY_BROKER_URL", "SMTP_URL"):
        env.pop(key, None)
    cli = [sys.executable, "-m", "reportcycles.cli"]
    subprocess.run([*cli, "demo"], cwd=ROOT, env=env, check=True, capture_output=True)
    with open(tmp_path / "run.log", "wb") as log:
        proc = subprocess.Popen([*cli, "run", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=60, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(20)


def wait_for_mail_count(base, minimum, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        html = urllib.request.urlopen(f"{base}/mailbox/").read().decode()
        if html.count("<tr><td>") >= minimum:
            return
        time.sleep(0.5)
    raise AssertionError(f"fewer than {minimum} mails in the local mailbox after {timeout}s")


def test_make_run_mode_delivers_invitations_to_the_local_mailbox(embedded_app, page):
    base = embedded_app
    wait_for_mail_count(base, 29)  # the in-process worker delivered every invitation

    page.goto(base + "/")
    expect(page.get_by_role("heading", name="Berichtsjahr 2027")).to_be_visible()
    expect(page.get_by_role("row", name=re.compile("eingeladen"))).to_contain_text("29")

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
