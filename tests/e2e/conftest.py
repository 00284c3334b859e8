"""The whole service as `reportcycles run` starts it, mailing a real SMTP server; a real Chromium."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect, sync_playwright

from tests.support.servers import ROOT, free_port, smtp_server, wait_for_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Service:
    def __init__(self, base, env, handler):
        self.base, self.env, self.handler = base, env, handler

    def cli(self, *args):
        result = subprocess.run([sys.executable, "-m", "reportcycles.cli", *args], cwd=ROOT,
                                env=self.env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (result.stdout, result.stderr)
        return result.stdout

    def mails(self, rung=None, to=None):
        with self.handler.lock:
            found = [m["message"] for m in self.handler.messages]
        return [m for m in found if (rung is None or m["X-Reportcycles-Rung"] == rung)
                and (to is None or to in m["To"])]

    def wait_for_mail(self, rung, to, count=1, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.mails(rung, to)
            if len(found) >= count:
                return found[count - 1]
            time.sleep(0.3)
        raise AssertionError(f"no {rung} mail #{count} for {to} after {timeout}s")

    def link_in(self, message) -> str:
        text = message.get_body(("plain",)).get_content()
        return re.search(re.escape(self.base) + r"/r/[A-Za-z0-9_-]+", text).group(0)


@pytest.fixture
def service(tmp_path):
    with smtp_server() as (controller, handler):
        port = free_port()
        env = {**os.environ, "INSTANCE_PATH": str(tmp_path / "instance"),
               "BASE_URL": f"http://127.0.0.1:{port}",
               "SMTP_URL": f"smtp://127.0.0.1:{controller.port}", "CELERY_BROKER_URL": "memory://"}
        env.pop("DATABASE_URL", None)
        cli = [sys.executable, "-m", "reportcycles.cli"]
        subprocess.run([*cli, "demo"], cwd=ROOT, env=env, check=True, capture_output=True)
        with open(tmp_path / "run.log", "wb") as log:
            proc = subprocess.Popen([*cli, "run", "--port", str(port)], cwd=ROOT, env=env,
                                    stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, timeout=60, proc=proc)
            yield Service(f"http://127.0.0.1:{port}", env, handler)
        finally:
            proc.terminate()
            proc.wait(20)


@pytest.fixture
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(locale="de-DE")
    yield context.new_page()
    context.close()


AXE = Axe()


def assert_accessible(page):
    """axe-core finds no WCAG 2.0/2.1 A or AA violation on the page as it is now."""
    results = AXE.run(page, options={"runOnly": {"type": "tag",
                                                 "values": ["wcag2a", "wcag2aa", "wcag21a",
                                                            "wcag21aa"]}})
    violations = [(v["id"], [n["target"] for n in v["nodes"]][:3])
                  for v in results.response["violations"]]
    assert violations == [], f"{page.url}: {violations}"


def tab_to(page, selector: str, limit: int = 200):
    """Press Tab until the element matching ``selector`` has the focus, as a keyboard user
    would."""
    for _ in range(limit):
        if page.evaluate("s => document.activeElement && document.activeElement.matches(s)",
                         selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{selector} cannot be reached with the Tab key")


def ask_for_more_time(partner, link: str, new_due: str, reason: str):
    """A partner asks for a later deadline on its own page (the form of the personal link)."""
    partner.goto(link)
    partner.get_by_role("link", name="Fristverlängerung beantragen").click()
    partner.get_by_label("Gewünschte neue Frist").fill(new_due)
    partner.get_by_label("Grund").fill(reason)
    partner.get_by_role("button", name="Antrag senden").click()
    expect(partner.get_by_role("status").first).to_contain_text("Ihr Antrag ist eingegangen")
