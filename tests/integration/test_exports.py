"""Coordinators download a cycle's reports and the yearly summary as CSV and XLSX."""
from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import openpyxl
import pytest
from sqlalchemy import update

from tests.integration.conftest import seed_programme
from tests.integration.test_cycle_engine import open_2027, submission_ids
from tests.support.report import VALID_ANSWERS
from tests.support.sign_in import signed_in_client
from web import create_app
from workflow.models import Partner, Submission
from workflow.reporting import save_draft, start_report, submit_report

FORMULA_NAME = '=HYPERLINK("http://example.com/x","Stadt Solingen")'


def submit(services, submission_id, **answers):
    now = datetime.now(UTC)
    with services.database.unit_of_work() as uow:
        submission = start_report(uow, submission_id, now=now, actor="test")
        save_draft(uow, submission_id, {**VALID_ANSWERS, **answers},
                   expected_version=submission.version, now=now, actor="test")
        submit_report(uow, submission_id, expected_version=submission.version, now=now,
                      actor="test")
        uow.commit()


@pytest.fixture
def cycle(services):
    seed_programme(services, partners=4)
    cycle_id = open_2027(services)
    first, second, third, _ = submission_ids(services)
    with services.database.unit_of_work() as uow:
        partner_id = uow.session.get(Submission, first).partner_id
        uow.session.execute(update(Partner).where(Partner.id == partner_id)
                            .values(name=FORMULA_NAME, employees=1300))
        uow.commit()
    submit(services, first, staff_total="1200", staff_immigration_share="18,5",
           staff_trained="140", share_surveyed="yes")
    submit(services, second, staff_total="800", staff_immigration_share="21,5",
           staff_trained="60", share_surveyed="no")
    with services.database.unit_of_work() as uow:
        start_report(uow, third, now=datetime.now(UTC), actor="test")  # opened, not received
        uow.commit()
    return cycle_id


@pytest.fixture
def coordinator(services):
    app = create_app(settings=services.settings, services=services)
    return signed_in_client(app, services, "koordination@example.org")


def xlsx_rows(response):
    assert response.status_code == 200, response.status_code
    assert response.headers["Content-Type"].startswith("application/vnd.openxmlformats")
    sheet = openpyxl.load_workbook(io.BytesIO(response.data)).worksheets[0]
    return sheet, [[cell.value for cell in row] for row in sheet.iter_rows()]


def test_the_cycle_export_in_xlsx_keeps_numbers_as_numbers_and_formulas_as_text(
        cycle, coordinator):
    sheet, rows = xlsx_rows(coordinator.get(f"/cycles/{cycle}/export.xlsx"))
    header = rows[0]
    assert header[:4] == ["Partner", "Art", "Mitglied von", "Zustand"]
    by_name = {row[0]: dict(zip(header, row)) for row in rows[1:]}
    assert len(by_name) == 4
    formula_row = by_name[FORMULA_NAME]
    assert formula_row["Zustand"] == "eingereicht"
    assert formula_row["Beschäftigte insgesamt"] == 1200
    assert formula_row["Anteil der Beschäftigten mit Einwanderungsgeschichte (in %)"] == 18.5
    cell = next(c for c in sheet["A"] if c.value == FORMULA_NAME)
    assert cell.data_type == "s" and cell.quotePrefix  # text, not a formula
    opened = [row for name, row in by_name.items() if row["Zustand"] == "geöffnet"]
    assert len(opened) == 1 and opened[0]["Beschäftigte insgesamt"] is None


def test_the_cycle_export_in_csv_neutralises_formulas_and_reads_in_german_excel(
        cycle, coordinator):
    response = coordinator.get(f"/cycles/{cycle}/export.csv")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response.headers["Content-Disposition"]
    text = response.data.decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff")), delimiter=";"))
    header = rows[0]
    named = {row[0]: dict(zip(header, row)) for row in rows[1:]}
    assert "'" + FORMULA_NAME in named  # a leading apostrophe keeps it text
    assert not any(row[0].startswith(("=", "+", "-", "@")) for row in rows[1:])
    row = named["'" + FORMULA_NAME]
    assert row["Anteil der Beschäftigten mit Einwanderungsgeschichte (in %)"] == "18,5"
    assert row["Erheben Sie den Anteil der Beschäftigten mit Einwanderungsgeschichte?"] == "ja"


def test_the_yearly_summary_adds_up_the_reports_received(cycle, coordinator):
    _, rows = xlsx_rows(coordinator.get(f"/cycles/{cycle}/summary.xlsx"))
    figures = {row[0]: (row[1], row[2]) for row in rows[1:]}
    assert figures["Partner im Berichtsjahr"] == (4, 4)
    assert figures["Eingegangene Berichte (eingereicht oder angenommen)"] == (2, 4)
    assert figures["Anteil eingegangener Berichte (in %)"] == (50, 4)
    assert figures["Beschäftigte insgesamt: Summe"] == (2000, 2)
    assert figures["Anteil der Beschäftigten mit Einwanderungsgeschichte (in %): Mittelwert"] \
        == (20, 2)
    assert figures["Beschäftigte, die an einer interkulturellen Schulung teilgenommen haben: "
                   "Summe"] == (200, 2)
    assert figures["Erheben Sie den Anteil der Beschäftigten mit Einwanderungsgeschichte?: "
                   "Anzahl „Ja“"] == (1, 2)


def test_the_summary_in_english_csv(cycle, coordinator, services):
    token = coordinator.get("/").get_data(as_text=True).split('name="csrf_token" value="')[1]
    coordinator.post("/language", data={"lang": "en", "next": "/",
                                        "csrf_token": token.split('"')[0]})
    response = coordinator.get(f"/cycles/{cycle}/summary.csv")
    rows = list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"))))
    figures = {row[0]: row[1] for row in rows[1:]}
    assert Decimal(figures["Share of staff with an immigration background (in %): mean"]) == 20
    assert figures["Total number of staff: total"] == "2000"


def test_unknown_cycles_and_formats_are_not_found_and_strangers_sign_in_first(
        cycle, coordinator, services):
    assert coordinator.get(f"/cycles/{cycle + 99}/export.xlsx").status_code == 404
    assert coordinator.get(f"/cycles/{cycle}/export.pdf").status_code == 404
    stranger = create_app(settings=services.settings, services=services).test_client()
    response = stranger.get(f"/cycles/{cycle}/export.csv")
    assert response.status_code == 303 and "/login" in response.headers["Location"]
