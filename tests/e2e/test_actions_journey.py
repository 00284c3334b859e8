"""A coordinator's actions in Debian's Chromium against `reportcycles run`: grant an extension from
the coordinators' mail by keyboard, exempt a partner after confirming, resend a link that then
opens the report; axe-core on every action page."""
from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.conftest import ask_for_more_time, assert_accessible
from tests.support.sign_in import console_sign_in_link

SOLINGEN = "berichte@solingen.example.org"
WDR = "berichte@wdr.example.org"


def partner_page(page, service, name: str):
    page.goto(service.base + "/cycles/1/partners?q=" + name)
    page.get_by_role("link", name=name, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(name)


def test_a_coordinator_grants_exempts_and_resends_from_the_pages(service, browser, page,
                                                                  tmp_path):
    # The partner asks for more time on its own page.
    partner = browser.new_context(locale="de-DE").new_page()
    ask_for_more_time(partner, service.link_in(service.wait_for_mail("invitation", SOLINGEN)),
                      "2027-06-30", "Personalwechsel <im> Team & mehr")

    # The coordinators' mail links to the request; the coordinator signs in on the way.
    mail = service.wait_for_mail("extension_request", "koordination@example.org")
    decide = re.search(re.escape(service.base) + r"/extensions/\d+",
                       mail.get_body(("plain",)).get_content()).group(0)
    page.goto(console_sign_in_link(tmp_path / "run.log"))
    page.goto(decide)
    expect(page.get_by_role("heading", level=1)).to_contain_text("Stadt Solingen")
    expect(page.locator(".quoted")).to_have_text("Personalwechsel <im> Team & mehr")
    assert_accessible(page)
    grant = page.get_by_role("button", name="Gewähren")
    grant.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status").first).to_contain_text("Die Verlängerung ist gewährt")
    expect(page.get_by_role("button", name="Gewähren")).to_have_count(0)
    decision = service.wait_for_mail("extension_decision", SOLINGEN)
    assert "30.06.2027" in decision.get_body(("plain",)).get_content()

    # Exempt, after a confirmation page with the reason.
    partner_page(page, service, "Westdeutscher Rundfunk Köln")
    page.get_by_role("link", name="Für dieses Jahr befreien").click()
    assert_accessible(page)
    page.get_by_label("Grund der Befreiung").fill("Umstrukturierung 2027")
    page.get_by_role("button", name="Ja, befreien").click()
    expect(page.get_by_role("status").first).to_contain_text("befreit")
    expect(page.get_by_role("button", name="Befreiung aufheben")).to_be_visible()
    assert_accessible(page)

    # Resend the link: a new mail whose link opens the report.
    partner_page(page, service, "Stadt Solingen")
    page.get_by_role("button", name="Link erneut senden").click()
    expect(page.get_by_role("status").first).to_contain_text("Ein neuer persönlicher Link")
    resent = service.wait_for_mail("link_resent", SOLINGEN)
    partner.goto(service.link_in(resent))
    expect(partner.get_by_role("heading", level=1)).to_contain_text("Stadt Solingen")
    assert_accessible(partner)
    partner.context.close()
