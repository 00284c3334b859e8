"""From the invitation in a real mailbox to a submitted report, in a real Chromium."""
from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.conftest import assert_accessible, tab_to
from tests.support.report import VALID_ANSWERS

SOLINGEN = "berichte@solingen.example.org"
SOEST = "berichte@kreis-soest.example.org"
RADIO = {"share_surveyed", "share_method", "selection_criterion"}


def fill_required(page, answers=VALID_ANSWERS):
    for question, value in answers.items():
        if question in RADIO:
            page.locator(f"#{question}-{value}").check()
        else:
            page.locator(f"#{question}").fill(value)


def open_link(page, service, to, rung="invitation"):
    link = service.link_in(service.wait_for_mail(rung, to))
    page.goto(link)
    return link


def test_partner_saves_a_draft_comes_back_and_submits(service, page):
    link = open_link(page, service, SOLINGEN)
    expect(page.get_by_role("heading", level=1)).to_contain_text("Stadt Solingen")
    assert_accessible(page)
    page.get_by_role("button", name="Bericht beginnen").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Jahresbericht 2027")
    assert_accessible(page)

    page.get_by_label("Beschäftigte insgesamt").fill("2900")
    page.get_by_role("button", name="Entwurf speichern").click()
    expect(page.get_by_role("status").first).to_contain_text("Entwurf gespeichert")
    page.close()

    # Another day, another tab: the draft is there.
    page = page.context.new_page()
    page.goto(link)
    page.get_by_role("button", name="Bericht weiter bearbeiten").click()
    expect(page.get_by_label("Beschäftigte insgesamt")).to_have_value("2900")

    page.get_by_role("button", name="Weiter zur Prüfung").click()
    summary = page.locator("#error-summary")
    expect(summary).to_be_focused()
    expect(summary.get_by_role("link")).to_have_count(8)
    assert_accessible(page)
    summary.get_by_role("link").first.click()
    expect(page.locator("#staff_immigration_share")).to_be_focused()

    fill_required(page)
    page.get_by_role("button", name="Weiter zur Prüfung").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Prüfen und einreichen")
    expect(page.get_by_role("row", name=re.compile("^Anteil der Beschäftigten"))).to_contain_text(
        "18,5 %")
    assert_accessible(page)
    page.get_by_role("button", name="Bericht verbindlich einreichen").click()
    expect(page.get_by_role("status").first).to_contain_text("Ihr Bericht ist eingegangen")
    assert_accessible(page)

    receipt = service.wait_for_mail("receipt", SOLINGEN)
    text = receipt.get_body(("plain",)).get_content()
    assert "Mehrsprachige Stellenanzeigen" in text and "18,5 %" in text
    page.get_by_role("link", name="Druckansicht Ihres Berichts").click()
    expect(page.get_by_role("table").first).to_be_visible()
    assert_accessible(page)




def test_the_whole_journey_works_with_the_keyboard_alone(service, page):
    open_link(page, service, SOEST)
    tab_to(page, "button[type=submit]:not([name=lang])")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Jahresbericht 2027")
    for question, value in VALID_ANSWERS.items():
        if question in RADIO:
            tab_to(page, f"input[name={question}]")
            target = f"#{question}-{value}"
            for _ in range(6):  # arrow keys move through a radio group
                if page.evaluate("s => document.querySelector(s).checked", target):
                    break
                page.keyboard.press("ArrowDown")
            expect(page.locator(target)).to_be_checked()
        else:
            tab_to(page, f"#{question}")
            page.keyboard.type(value)
    tab_to(page, "button[value=review]")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Prüfen und einreichen")
    tab_to(page, "form[action$='/submit'] button")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status").first).to_contain_text("Ihr Bericht ist eingegangen")
    service.wait_for_mail("receipt", SOEST)


def submit_report(page, service, to):
    link = open_link(page, service, to)
    page.get_by_role("button", name="Bericht beginnen").click()
    fill_required(page)
    page.get_by_role("button", name="Weiter zur Prüfung").click()
    page.get_by_role("button", name="Bericht verbindlich einreichen").click()
    expect(page.get_by_role("status").first).to_contain_text("Ihr Bericht ist eingegangen")
    return link


def test_returned_report_is_revised_and_resubmitted(service, page):
    submit_report(page, service, SOLINGEN)
    service.cli("reports", "return", "--year", "2027", "--partner", "Stadt Solingen",
                "--comment", "Bitte die Zahlen zu den Auszubildenden prüfen.",
                "--field", "trainees_total=Sind hier auch Nachwuchskräfte enthalten?")
    returned = service.wait_for_mail("returned", SOLINGEN)
    assert "Nachwuchskräfte enthalten" in returned.get_body(("plain",)).get_content()
    page.goto(service.link_in(returned))
    expect(page.get_by_text("Bitte die Zahlen zu den Auszubildenden prüfen.")).to_be_visible()
    page.get_by_role("button", name="Bericht weiter bearbeiten").click()
    comment = page.locator("#trainees_total-comment")
    expect(comment).to_contain_text("Nachwuchskräfte enthalten")
    expect(page.locator("#trainees_total")).to_have_attribute(
        "aria-describedby", re.compile("trainees_total-comment"))
    expect(page.locator("#trainees_total")).to_have_value("40")  # the answers are kept
    assert_accessible(page)
    page.locator("#trainees_total").fill("44")
    page.get_by_role("button", name="Weiter zur Prüfung").click()
    page.get_by_role("button", name="Bericht verbindlich einreichen").click()
    expect(page.get_by_role("status").first).to_contain_text("Ihr Bericht ist eingegangen")
    service.wait_for_mail("receipt", SOLINGEN, count=2)
    assert "submitted" in service.cli("cycles", "status", "2027")


def test_extension_request_is_decided_and_the_deadline_moves(service, page):
    open_link(page, service, SOLINGEN)
    page.get_by_role("link", name="Fristverlängerung beantragen").click()
    assert_accessible(page)
    page.get_by_role("button", name="Antrag senden").click()
    expect(page.get_by_role("alert")).to_be_visible()  # nothing filled in: a clear message
    page.get_by_label("Gewünschte neue Frist").fill("2027-06-30")
    page.get_by_label("Grund").fill("Personalwechsel im Integrationsteam")
    page.get_by_role("button", name="Antrag senden").click()
    expect(page.get_by_role("status").first).to_contain_text("Ihr Antrag ist eingegangen")
    request = service.wait_for_mail("extension_request", "koordination@example.org")
    request_id = re.search(r"extensions decide (\d+)",
                           request.get_body(("plain",)).get_content()).group(1)
    assert "Personalwechsel" in service.cli("extensions", "list")
    service.cli("extensions", "decide", request_id, "--grant")
    decision = service.wait_for_mail("extension_decision", SOLINGEN)
    assert "30.06.2027" in decision.get_body(("plain",)).get_content()
    page.reload()
    expect(page.locator(".facts")).to_contain_text("30.06.2027")


def test_partner_says_when_it_will_submit_and_the_coordinators_hear_of_it(service, page):
    open_link(page, service, SOLINGEN)
    page.get_by_role("link", name=re.compile("Mitteilen, bis wann")).click()
    assert_accessible(page)
    page.get_by_label("Einreichung bis").fill("2027-05-14")
    page.get_by_role("button", name="Rückmeldung senden").click()
    expect(page.locator(".facts")).to_contain_text("14.05.2027")
    notice = service.wait_for_mail("intent_notice", "koordination@example.org")
    assert "Stadt Solingen" in notice.get_body(("plain",)).get_content()


LEAD = "berichte@integration-interkommunal.example.org"
MEMBERS = ["bochum", "dortmund", "duisburg", "essen", "gelsenkirchen", "herne", "muelheim",
           "oberhausen", "bottrop"]


def test_group_members_fill_their_parts_and_the_lead_submits_the_whole(service, page):
    lead_link = open_link(page, service, LEAD)
    progress = page.get_by_role("table", name="Stand der Mitglieder")
    expect(progress.get_by_role("row")).to_have_count(10)
    expect(progress).to_contain_text("noch nicht begonnen")
    assert_accessible(page)
    page.get_by_role("button", name="Bericht beginnen").click()
    fill_required(page)
    page.get_by_role("button", name="Weiter zur Prüfung").click()
    page.get_by_role("button", name="Bericht verbindlich einreichen").click()
    expect(page.get_by_role("alert")).to_contain_text("9 Mitglieder haben ihren Teil noch nicht")

    for city in MEMBERS:
        member_link = open_link(page, service, f"integration@{city}.example.org",
                                rung="member_invitation")
        expect(page.get_by_text("Ihr Teil des gemeinsamen Berichts")).to_be_visible()
        if city == "bochum":
            assert_accessible(page)
            # A member's link opens its own part only, never the lead's pages.
            assert page.request.get(member_link + "/review").status == 404
            assert page.request.get(member_link + "/extension").status == 404
        page.get_by_role("button", name="Teil bearbeiten").click()
        fill_required(page)
        page.get_by_role("button", name="Teil als fertig melden").click()
        expect(page.get_by_role("status").first).to_contain_text("als fertig gemeldet")

    page.goto(lead_link)
    expect(progress.get_by_text("fertig gemeldet")).to_have_count(9)
    page.get_by_role("button", name="Bericht weiter bearbeiten").click()
    page.get_by_role("button", name="Weiter zur Prüfung").click()
    page.get_by_role("button", name="Bericht verbindlich einreichen").click()
    expect(page.get_by_role("status").first).to_contain_text("Ihr Bericht ist eingegangen")
    service.wait_for_mail("receipt", LEAD)


def test_english_contact_gets_the_pages_in_english_and_can_switch(service, page):
    link = open_link(page, service, "wdr.example.org")  # the WDR contact reads English
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Report 2027")
    page.get_by_role("button", name="Start the report").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("2027 annual report")
    page.get_by_role("button", name=re.compile("Continue to review")).click()
    expect(page.locator("#error-summary")).to_contain_text("Please fill in this field.")
    assert_accessible(page)
    page.get_by_role("button", name="Deutsch").click()
    expect(page.locator("html")).to_have_attribute("lang", "de")
    page.goto(link + "/extension")
    page.get_by_label("Gewünschte neue Frist").fill("2020-01-01")
    page.get_by_label("Grund").fill("Test")
    page.get_by_role("button", name="Antrag senden").click()
    expect(page.get_by_role("alert")).to_contain_text("nach der jetzigen Frist")


def test_typing_is_saved_in_the_background(service, page):
    link = open_link(page, service, SOLINGEN)
    page.get_by_role("button", name="Bericht beginnen").click()
    page.wait_for_load_state()  # typing before the deferred script listens would not be seen
    page.get_by_label("Beschäftigte insgesamt").fill("2950")
    expect(page.locator("#autosave-status")).to_contain_text("Entwurf gespeichert um",
                                                             timeout=15000)
    page.goto(link + "/form")  # no button was pressed: the draft was saved by the script
    expect(page.get_by_label("Beschäftigte insgesamt")).to_have_value("2950")
