"""A coordinator's working day in Debian's Chromium against `reportcycles run` with a real SMTP
server: sign in with the console link, the demo cycle's overview, overdue partners, a submitted
report and its attachment, an extension granted from the coordinators' mail, a report returned
with a comment, a partner exempted, a link resent; the overview follows a partner who submits in
another browser by itself. axe-core on every dashboard page; the actions work by keyboard."""
from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from playwright.sync_api import expect

from tests.e2e.conftest import ask_for_more_time, assert_accessible, tab_to
from tests.support.report import VALID_ANSWERS
from tests.support.sign_in import console_sign_in_link

SOLINGEN, SOLINGEN_MAIL = "Stadt Solingen", "berichte@solingen.example.org"
LIPPE, LIPPE_MAIL = "Kreis Lippe", "berichte@kreis-lippe.example.org"
OVERDUE = ("Kreis Soest", "Stadt Duisburg")
EXEMPTED, RESENT = "Jobcenter Duisburg", "Stadt Duisburg"
COORDINATORS = "koordination@example.org"
RADIO = {"share_surveyed", "share_method", "selection_criterion"}
PDF = b"%PDF-1.4\n% Auswahlleitfaden\n"




def make_overdue(service, names):
    """Two partners whose own deadline has passed (the demo's cycle is due next spring)."""
    database = service.env["INSTANCE_PATH"] + "/reportcycles.sqlite"
    with sqlite3.connect(database, timeout=30) as conn:
        conn.executemany(
            "UPDATE submission SET due_on = '2026-11-02' WHERE partner_id = "
            "(SELECT id FROM partner WHERE name = ?)", [(name,) for name in names])


def submit_with_attachment(partner, service):
    """The partner, in a browser of their own, submits a report with a file from the mail."""
    partner.goto(service.link_in(service.wait_for_mail("invitation", SOLINGEN_MAIL)))
    partner.get_by_role("button", name="Bericht beginnen").click()
    for question, value in VALID_ANSWERS.items():
        if question in RADIO:
            partner.locator(f"#{question}-{value}").check()
        else:
            partner.locator(f"#{question}").fill(value)
    partner.locator("#selection_document").set_input_files(
        {"name": "auswahlleitfaden.pdf", "mimeType": "application/pdf", "buffer": PDF})
    partner.get_by_role("button", name="Weiter zur Prüfung").click()
    partner.get_by_role("button", name="Bericht verbindlich einreichen").click()
    expect(partner.get_by_role("status").first).to_contain_text("Ihr Bericht ist eingegangen")


def request_extension(partner, service):
    ask_for_more_time(partner, service.link_in(service.wait_for_mail("invitation", LIPPE_MAIL)),
                      "30.06.2027", "Personalwechsel im Integrationsteam")


def open_partner_page(page, overview, name):
    """From the cycle overview through the table of all partners, searched, to the partner."""
    page.goto(overview)
    page.get_by_role("link", name="alle Partner").click()
    page.get_by_label("Suche (Partner, Kontaktname oder E-Mail-Adresse)").fill(name)
    page.keyboard.press("Enter")
    page.locator("main table").get_by_role("link", name=name, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(name)


def test_a_coordinator_reads_decides_and_acts_while_the_overview_follows(service, page, browser,
                                                                         tmp_path):
    make_overdue(service, OVERDUE)
    page.goto(console_sign_in_link(tmp_path / "run.log"))
    assert_accessible(page)
    page.get_by_role("link", name="Berichtsjahr 2027").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Berichtsjahr 2027")
    headline = page.locator("#overview-figures .headline")
    expect(headline).to_contain_text("0 von 29")
    assert_accessible(page)
    overview = page.url

    # A partner submits in another browser: the open overview follows without a reload.
    partner = browser.new_context(locale="de-DE").new_page()
    submit_with_attachment(partner, service)
    expect(headline).to_contain_text("1 von 29", timeout=25_000)
    assert page.url == overview

    # Overdue partners: the filter the overview links to.
    page.get_by_role("link", name="überfällig").click()
    expect(page.get_by_label("nur überfällige")).to_be_checked()
    table = page.locator("main table")
    for name in OVERDUE:
        expect(table.get_by_role("link", name=name, exact=True)).to_be_visible()
    expect(table.get_by_role("link", name=SOLINGEN, exact=True)).to_have_count(0)
    assert_accessible(page)

    # The submitted report and its attachment.
    page.goto(overview)
    page.get_by_role("link", name="eingereicht", exact=True).click()
    page.locator("main table").get_by_role("link", name=SOLINGEN, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(SOLINGEN)
    expect(page.locator("main")).to_contain_text("Mehrsprachige Stellenanzeigen")
    assert_accessible(page)
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("auswahlleitfaden.pdf")).click()
    assert download.value.suggested_filename == "auswahlleitfaden.pdf"
    assert Path(download.value.path()).read_bytes() == PDF
    solingen = page.url

    # Return it with a comment, by keyboard: Tab to the button, Enter.
    page.get_by_role("link", name="Mit Kommentaren zurückgeben").click()
    assert_accessible(page)
    page.get_by_label("Allgemeiner Kommentar").fill("Bitte die Zahl der Schulungen prüfen.")
    tab_to(page, "main button[type=submit]")
    page.keyboard.press("Enter")
    page.wait_for_url(solingen)
    expect(page.locator("main")).to_contain_text("zurückgegeben")
    returned = service.wait_for_mail("returned", SOLINGEN_MAIL)
    assert "Bitte die Zahl der Schulungen prüfen." in returned.get_body(("plain",)).get_content()

    # An extension, decided from the link in the coordinators' mail.
    request_extension(partner, service)
    notice = service.wait_for_mail("extension_request", COORDINATORS)
    link = re.search(re.escape(service.base) + r"/extensions/\d+",
                     notice.get_body(("plain",)).get_content()).group(0)
    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_contain_text(LIPPE)
    assert_accessible(page)
    page.get_by_role("button", name="Gewähren").click()
    decision = service.wait_for_mail("extension_decision", LIPPE_MAIL)
    assert "30.06.2027" in decision.get_body(("plain",)).get_content()
    assert_accessible(page)

    # Exempt a partner (with a reason, confirmed), then resend another one's link.
    open_partner_page(page, overview, EXEMPTED)
    page.get_by_role("link", name="Für dieses Jahr befreien").click()
    assert_accessible(page)
    page.get_by_label("Grund der Befreiung").fill("Die Stelle wird aufgelöst.")
    page.get_by_role("button", name="Ja, befreien").click()
    expect(page.locator("main")).to_contain_text("befreit")
    assert_accessible(page)

    open_partner_page(page, overview, RESENT)
    page.get_by_role("button", name="Link erneut senden").click()
    resent = service.wait_for_mail("link_resent", "berichte@duisburg.example.org")
    assert service.link_in(resent).startswith(service.base + "/r/")
    assert_accessible(page)
    partner.context.close()
