"""Coordinators' sign-in in Debian's Chromium against `reportcycles run`: the one-step link of
the console, an invitation made on the command line, a forgotten password by mail; keyboard
only, and axe-core on every sign-in page, with and without errors."""
from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.conftest import assert_accessible, tab_to
from tests.support.sign_in import console_sign_in_link

NEW_PASSWORD = "Vielfalt stärkt Nordrhein-Westfalen"




def test_the_console_link_signs_a_newcomer_in_in_one_step(service, page, browser, tmp_path):
    link = console_sign_in_link(tmp_path / "run.log")
    assert link.startswith(service.base + "/login/link/")
    log = (tmp_path / "run.log").read_text(encoding="utf-8")
    assert "Anmelden als koordination@example.org" in log

    page.goto(link)
    assert page.url == service.base + "/"
    expect(page.get_by_role("link", name="Berichtsjahr 2027")).to_be_visible()
    expect(page.get_by_role("button", name="Abmelden")).to_be_visible()
    expect(page.get_by_role("link", name="Konten")).to_be_visible()  # the demo account: admin
    assert_accessible(page)

    # Single use: a second browser gets the friendly page, not a session.
    other = browser.new_context(locale="de-DE").new_page()
    response = other.goto(link)
    assert response.status == 410
    expect(other.get_by_role("heading", level=1)).to_have_text("Link nicht mehr gültig")
    assert_accessible(other)
    other.goto(service.base + "/")
    assert other.url == service.base + "/login"
    other.context.close()


def test_invited_person_sets_a_password_and_signs_in_by_keyboard_alone(service, page):
    printed = service.cli("users", "create", "neu@example.org", "--role", "coordinator",
                          "--name", "Derya Şahin")
    link = re.search(re.escape(service.base) + r"/login/link/\S+", printed).group(0)

    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text("Passwort festlegen")
    expect(page.get_by_label("E-Mail-Adresse")).to_have_value("neu@example.org")
    assert_accessible(page)
    tab_to(page, "#password")
    page.keyboard.type("zu kurz")
    tab_to(page, "#password2")
    page.keyboard.type("zu kurz")
    tab_to(page, "main button[type=submit]")
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    expect(page.locator("#error-summary")).to_contain_text("mindestens 12 Zeichen")
    expect(page.locator("#error-summary")).to_be_focused()  # read first; links to the fields
    assert_accessible(page)
    tab_to(page, "#error-summary a")
    page.keyboard.press("Enter")
    expect(page.locator("#password")).to_be_focused()
    page.keyboard.type(NEW_PASSWORD)
    tab_to(page, "#password2")
    page.keyboard.type(NEW_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(service.base + "/")
    expect(page.get_by_role("status")).to_contain_text("Sie sind angemeldet")

    tab_to(page, "header .account button")
    page.keyboard.press("Enter")
    page.wait_for_url(service.base + "/login")
    expect(page.get_by_role("status")).to_contain_text("Sie sind abgemeldet")
    assert_accessible(page)

    tab_to(page, "#email")
    page.keyboard.type("neu@example.org")
    tab_to(page, "#password")
    page.keyboard.type("nicht das Passwort")
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    expect(page.locator("#error-summary")).to_contain_text("stimmt nicht")
    expect(page.locator("#error-summary")).to_be_focused()
    assert_accessible(page)
    tab_to(page, "#password")
    page.keyboard.type(NEW_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(service.base + "/")
    expect(page.get_by_text("neu@example.org")).to_be_visible()


def test_a_forgotten_password_comes_back_by_mail_in_english_too(service, page):
    service.cli("users", "create", "coordinator@example.org", "--role", "viewer",
                "--language", "en")
    page.goto(service.base + "/?year=2027")
    assert page.url.startswith(service.base + "/login?next=")
    page.get_by_role("button", name="English").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    page.get_by_role("link", name="Forgot your password?").click()
    assert_accessible(page)
    page.get_by_label("Email address").fill("coordinator@example.org")
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("status")).to_contain_text("an email with a link is on its way")
    assert_accessible(page)

    mail = service.wait_for_mail("account_reset", "coordinator@example.org")
    assert mail["Subject"].startswith("A new password")
    link = re.search(re.escape(service.base) + r"/login/link/[A-Za-z0-9_-]+",
                     mail.get_body(("plain",)).get_content()).group(0)
    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text("Set your password")
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Save the password and sign in").click()
    page.wait_for_url(service.base + "/")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
