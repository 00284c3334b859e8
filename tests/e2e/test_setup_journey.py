"""Setting up next year in Debian's Chromium against `reportcycles run`: plan the cycle, see the
preview of every mail, change a rung and see the preview follow, send a test mail to oneself,
import a CSV with errors and then a correct one; axe-core on every set-up page."""
from __future__ import annotations

from playwright.sync_api import expect

from tests.e2e.conftest import assert_accessible
from tests.support.sign_in import console_sign_in_link

COORDINATOR = "koordination@example.org"
HEADER = ("name,kind,contact_name,contact_email,deputy_email,head_name,head_email,language,"
          "joined_on\n")


def test_a_coordinator_sets_up_next_year_and_imports_partners(service, page, tmp_path):
    page.goto(console_sign_in_link(tmp_path / "run.log"))
    page.goto(service.base + "/setup/cycles")
    assert_accessible(page)
    page.get_by_role("link", name="Neuen Berichtszyklus planen").click()
    assert_accessible(page)
    page.get_by_label("Berichtsjahr").fill("2028")
    page.get_by_label("Öffnung (Einladungen gehen hinaus)").fill("01.02.2028")
    page.get_by_label("Frist für die Berichte").fill("30.01.2028")
    page.get_by_role("button", name="Berichtszyklus planen").click()
    expect(page.locator("#error-summary")).to_contain_text("Die Frist muss nach der Öffnung")
    expect(page.locator("#error-summary")).to_be_focused()
    assert_accessible(page)
    page.get_by_label("Frist für die Berichte").fill("28.04.2028")
    page.get_by_role("button", name="Berichtszyklus planen").click()
    expect(page.get_by_role("status").first).to_contain_text("Der Berichtszyklus 2028 ist geplant")
    assert_accessible(page)

    page.get_by_role("link", name="Vorschau jeder E-Mail für einen Partner").click()
    expect(page.locator("ol.preview")).to_contain_text("Erinnerung 28 Arbeitstage vor der Frist")
    assert_accessible(page)
    page.get_by_role("button", name="Test: Erinnerung an mich").click()
    expect(page.get_by_role("status").first).to_contain_text("Test-E-Mail")
    test_mail = service.wait_for_mail("test_reminder-28", COORDINATOR)
    assert test_mail["Subject"].startswith("[Test] ")

    preview = page.url
    page.get_by_role("link", name="Erinnerungen und Mahnungen", exact=True).click()
    assert_accessible(page)
    page.get_by_label("Erinnerungen, Arbeitstage vor der Frist").fill("20, 5")
    page.get_by_role("button", name="Berichtsregel speichern").click()
    expect(page.get_by_role("status").first).to_contain_text("Die Berichtsregel ist gespeichert")
    page.goto(preview)
    expect(page.locator("ol.preview")).to_contain_text("Erinnerung 20 Arbeitstage vor der Frist")
    expect(page.locator("ol.preview")).not_to_contain_text("Erinnerung 28 Arbeitstage")

    page.goto(service.base + "/setup/partners/import")
    assert_accessible(page)
    bad = tmp_path / "partner.csv"
    bad.write_text(HEADER + "Neuer Verein,Zoo,A,a@example.org,,,,de,\n", encoding="utf-8")
    page.get_by_label("CSV-Datei").set_input_files(str(bad))
    page.get_by_role("button", name="Prüfen und Vorschau zeigen").click()
    expect(page.locator("#error-summary")).to_contain_text("Zeile 2")
    assert_accessible(page)
    good = tmp_path / "partner-gut.csv"
    good.write_text(HEADER + "=Neuer <b>Verein</b>,Verband,A,a@example.org,,,,de,\n",
                    encoding="utf-8")
    page.get_by_label("CSV-Datei").set_input_files(str(good))
    page.get_by_role("button", name="Prüfen und Vorschau zeigen").click()
    expect(page.locator("table")).to_contain_text("=Neuer <b>Verein</b>")
    assert_accessible(page)
    page.get_by_role("button", name="Jetzt importieren").click()
    expect(page.get_by_role("status").first).to_contain_text("1 angelegt")
    assert_accessible(page)
    page.get_by_role("link", name="=Neuer <b>Verein</b>").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("=Neuer <b>Verein</b>")
    assert_accessible(page)
    page.goto(service.base + "/setup/templates")
    assert_accessible(page)
