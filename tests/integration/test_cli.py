"""The `reportcycles` command as a coordinator uses it: real processes, real SQLite, real SMTP."""
from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys

import pytest

from tests.integration.conftest import partner_csv
from tests.support.servers import ROOT

GOOD_CSV = partner_csv(3)


@pytest.fixture
def cli(tmp_path, smtp):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite'}",
           "INSTANCE_PATH": str(tmp_path / "instance"),
           "SMTP_URL": f"smtp://127.0.0.1:{smtp[0].port}", "CELERY_BROKER_URL": "memory://"}

    def run(*args, expect=0):
        result = subprocess.run([sys.executable, "-m", "reportcycles.cli", *args], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == expect, (result.stdout, result.stderr)
        return result

    run("init")
    return run


def events_of(tmp_path, kind) -> list[tuple[str, dict]]:
    """(actor, payload) of the events of ``kind`` the commands wrote."""
    with sqlite3.connect(tmp_path / "cli.sqlite") as db:
        return [(actor, json.loads(payload)) for actor, payload in db.execute(
            "SELECT actor, payload FROM event WHERE kind = ? ORDER BY id", (kind,))]


def write(tmp_path, text, name="partners.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_bad_csv_lines_are_reported_by_number_and_nothing_is_imported(cli, tmp_path):
    bad = GOOD_CSV.splitlines()
    bad[2] = bad[2].replace("Kreis", "Raumstation")
    bad[3] = bad[3].replace("p2@example.org", "p2-at-example.org")
    result = cli("partners", "import", write(tmp_path, "\n".join(bad) + "\n"), expect=2)
    assert "Zeile 3" in result.stderr and "unbekannte Art 'Raumstation'" in result.stderr
    assert "Zeile 4" in result.stderr and "ungültige E-Mail-Adresse" in result.stderr
    assert "nichts wurde gespeichert" in result.stderr
    # The good first line was not imported either: opening a cycle finds no partner.
    opened = cli("cycles", "open", "--year", "2027", expect=2)
    assert "kein Programm" in opened.stderr  # not even the programme row was written


def test_missing_columns_and_missing_file_get_clear_messages(cli, tmp_path):
    result = cli("partners", "import", write(tmp_path, "name,kind\nStadt Essen,Kommune\n"),
                 expect=2)
    assert "fehlen Spalten" in result.stderr and "contact_email" in result.stderr
    assert "nicht gefunden" in cli("partners", "import", str(tmp_path / "nope.csv"),
                                   expect=2).stderr


def import_partners_and_template(cli, tmp_path):
    cli("partners", "import", write(tmp_path, GOOD_CSV))
    assert "2027 Version 1 geladen" in cli("templates", "load", "nrw-vielfalt-2027").stdout


def test_a_cycle_without_any_report_template_is_refused_naming_templates_load(cli, tmp_path, smtp):
    cli("partners", "import", write(tmp_path, GOOD_CSV))
    refused = cli("cycles", "open", "--year", "2027", "--opens", "2027-02-01", expect=2)
    assert "keine Berichtsvorlage" in refused.stderr and "templates load" in refused.stderr
    assert "keinen Berichtszyklus" in cli("cycles", "status", "2027", expect=2).stderr
    assert smtp[1].messages == []


def test_a_later_cycle_carries_the_last_template_forward_and_says_so(cli, tmp_path, smtp):
    import_partners_and_template(cli, tmp_path)
    opened = cli("cycles", "open", "--year", "2028", "--opens", "2028-02-01", "--due",
                 "2028-04-28").stdout
    assert "Vorlage von 2027 wurde übernommen" in opened
    cli("sweep", "--at", "2028-02-01T08:30")
    assert len(smtp[1].messages) == 3  # the invitations' links lead to the carried-over form


def test_unknown_year_and_due_before_opening_are_refused(cli, tmp_path):
    import_partners_and_template(cli, tmp_path)
    assert "keinen Berichtszyklus" in cli("cycles", "status", "2031", expect=2).stderr
    refused = cli("cycles", "open", "--year", "2027", "--opens", "2027-05-01", "--due",
                  "2027-04-30", expect=2)
    assert "muss nach der Öffnung" in refused.stderr
    assert "kein Datum" in cli("cycles", "open", "--year", "2027", "--due", "30.04.2027",
                               expect=2).stderr
    # Nothing was half-written: the year can still be opened properly.
    cli("cycles", "open", "--year", "2027", "--opens", "2027-02-01", "--due", "2027-04-30")
    assert "bereits geöffnet" in cli("cycles", "open", "--year", "2027", expect=2).stderr


def test_sweep_rehearses_the_year_against_a_real_smtp_server(cli, tmp_path, smtp):
    _, handler = smtp
    import_partners_and_template(cli, tmp_path)
    cli("cycles", "open", "--year", "2027", "--opens", "2027-02-01", "--due", "2027-04-30")
    dry = json.loads(cli("sweep", "--at", "2027-02-01T08:30", "--dry-run", "--json").stdout)
    assert dry["send"] == 3 and dry["dry_run"] and handler.messages == []
    out = cli("sweep", "--at", "2027-02-01T08:30").stdout
    assert "sendet 3" in out
    assert len(handler.messages) == 3
    assert "sendet 0" in cli("sweep", "--at", "2027-02-01T08:30").stdout
    later = json.loads(cli("sweep", "--at", "2027-05-07", "--json").stdout)
    # 3 catch-up mails + the deadline notice; the four reminders of each partner are skipped
    assert later["send"] == 4 and later["skip"] == 12
    assert len(handler.messages) == 7
    status = json.loads(cli("cycles", "status", "2027", "--json").stdout)
    assert status["by_state"]["invited"] == 3 and status["escalation_levels"] == {"1": 3}
    preview = cli("preview", "--year", "2027", "--partner", "Partner 00001").stdout
    assert "overdue-30" in preview and "16.06.2027" in preview
    assert "kein Zeitpunkt" in cli("sweep", "--at", "gestern", expect=2).stderr


def test_demo_loads_the_initiative_partners(cli):
    assert "38 Partner angelegt" in cli("demo").stdout
    status = json.loads(cli("cycles", "status", "2027", "--json").stdout)
    # 29 partners report; the nine cities report through the Städtekooperation.
    assert status["partners"] == 29
    preview = cli("preview", "--year", "2027", "--partner", "Städtekooperation").stdout
    assert "Städtekooperation Integration.Interkommunal" in preview
    for wildcard in ("%", "_"):  # literally: no partner's name holds them
        assert "Kein Partner passt" in cli("preview", "--year", "2027", "--partner", wildcard,
                                           expect=2).stderr


def test_policy_is_edited_in_a_file_and_applies_to_cycles_opened_afterwards(cli, tmp_path):
    import_partners_and_template(cli, tmp_path)
    shown = cli("policy", "show").stdout
    assert 'window_start = "08:00"' in shown and "reminders_before = [28, 14, 7, 2]" in shown
    edited = shown.replace("reminders_before = [28, 14, 7, 2]", "reminders_before = [10, 5]")
    cli("policy", "set", write(tmp_path, edited, "policy.toml"))
    # An event keeps what changed (and tells the coordinators' pages that figures may have).
    assert events_of(tmp_path, "policy_changed") == [
        ("cli", {"changes": {"reminders_before": {"old": [28, 14, 7, 2], "new": [10, 5]}}})]
    cli("policy", "set", write(tmp_path, edited, "policy.toml"))
    assert len(events_of(tmp_path, "policy_changed")) == 1  # the same again: nothing changed
    cli("cycles", "open", "--year", "2027", "--opens", "2027-02-01", "--due", "2027-04-30")
    preview = cli("preview", "--year", "2027", "--partner", "Partner 00000").stdout
    assert "reminder-10" in preview and "reminder-5" in preview and "reminder-28" not in preview
    typo = shown.replace('email = "escalation_head"', 'email = "eskalation_leitung"')
    refused = cli("policy", "set", write(tmp_path, typo, "typo.toml"), expect=2)
    assert "Unbekannte Mail in der Berichtsregel: eskalation_leitung" in refused.stderr
    bad = cli("policy", "set", write(tmp_path, 'window_start = "11:00"\n', "bad.toml"), expect=2)
    assert "Versandfenster" in bad.stderr
    # What would fail only later, when a cycle opens or a mail is composed, is refused now.
    nowhere = shown.replace('holiday_country = "DE"', 'holiday_country = "XX"')
    assert "Keine Feiertage bekannt für XX-NW" in cli(
        "policy", "set", write(tmp_path, nowhere, "nowhere.toml"), expect=2).stderr
    assert "kein gültiges TOML" in cli("policy", "set", write(tmp_path, "x = [", "broken.toml"),
                                        expect=2).stderr


def test_outbox_shows_failed_mails_and_puts_them_back(cli, tmp_path, smtp):
    _, handler = smtp
    import_partners_and_template(cli, tmp_path)
    cli("cycles", "open", "--year", "2027", "--opens", "2027-02-01", "--due", "2027-04-30")
    handler.refuse_recipients = {"p1@example.org": "550 5.1.1 user unknown"}
    cli("sweep", "--at", "2027-02-01T08:30")
    status = cli("outbox", "status").stdout
    assert "failed 1" in status and "sent 2" in status and "Partner 00001" in status
    assert "p1@example.org" not in status  # addresses stay out of the output
    assert json.loads(cli("outbox", "status", "--json").stdout)["by_status"]["failed"] == 1
    handler.refuse_recipients = {}
    assert "1 fehlgeschlagene Mails wieder" in cli("outbox", "retry", "--year", "2027").stdout
    assert json.loads(cli("outbox", "status", "--json").stdout)["by_status"].get("failed") is None
    assert "nichts zu tun" in cli("outbox", "retry").stdout


def test_exports_data_care_and_api_tokens_on_the_command_line(cli, tmp_path):
    import openpyxl
    cli("demo")
    cli("export", "--year", "2027", "--output", str(tmp_path / "reports.xlsx"))
    sheet = openpyxl.load_workbook(tmp_path / "reports.xlsx").worksheets[0]
    assert sheet.max_row == 30 and sheet["A1"].value == "Partner"  # 29 partners and the header
    cli("export", "--year", "2027", "--summary", "--format", "csv", "--language", "en",
        "-o", str(tmp_path / "summary.csv"))
    assert "Partners in the reporting year,29,29" in (tmp_path / "summary.csv").read_text(
        encoding="utf-8-sig")
    assert "keinen Berichtszyklus" in cli("export", "--year", "2030", "-o",
                                          str(tmp_path / "x.xlsx"), expect=2).stderr

    roles = {i: json.loads(cli("contacts", "data", str(i)).stdout)["contact"]["role"]
             for i in (1, 2, 3)}
    reporting = next(i for i, role in roles.items() if role == "reporting")
    other = next(i for i, role in roles.items() if role != "reporting")
    assert "letzte berichtende Kontakt" in cli("contacts", "erase", str(reporting),
                                               expect=2).stderr
    erased = cli("contacts", "erase", str(other)).stdout
    assert "Kontakt " in erased and "nennt ihn" in erased
    assert "gibt es nicht" in cli("contacts", "data", str(other), expect=2).stderr
    assert "E-Mail-Kopien geleert" in cli("retention").stdout

    token = cli("users", "token", "koordination@example.org", "--name", "Ministerium").stdout
    assert re.search(r"rc_[A-Za-z0-9_-]{40,}", token)
    assert "Kein aktives Konto" in cli("users", "token", "niemand@example.org", "--name", "x",
                                       expect=2).stderr


def test_a_template_year_or_version_beyond_reason_is_refused(cli, tmp_path):
    cli("partners", "import", str(write(tmp_path, GOOD_CSV)))
    definition = json.loads((ROOT / "reportcycles" / "data" / "report_templates" /
                             "nrw-vielfalt-2027.json").read_text(encoding="utf-8"))
    for key, value in (("year", 99_999_999_999), ("version", 10 ** 12)):
        path = tmp_path / f"{key}.json"
        path.write_text(json.dumps({**definition, key: value}), encoding="utf-8")
        assert f"{key} muss zwischen" in cli("templates", "load", str(path), expect=2).stderr


def test_a_partner_import_is_kept_as_an_event_when_it_changes_something(cli, tmp_path):
    cli("partners", "import", write(tmp_path, GOOD_CSV))
    cli("partners", "import", write(tmp_path, GOOD_CSV))  # the same list: nothing changed
    assert events_of(tmp_path, "partners_imported") == [
        ("cli", {"created": 3, "updated": 0, "unchanged": 0})]


def test_only_the_schedulers_own_jobs_count_as_its_sign_of_life(cli, tmp_path, monkeypatch):
    from infra.settings import Settings
    from reportcycles.bootstrap import build
    from tasks.scheduler import make_scheduler
    assert "kein Lebenszeichen" in cli("health", "scheduler", expect=1).stderr
    cli("relay")  # by hand: the scheduler may still be down
    cli("sweep", "--dry-run")
    assert "kein Lebenszeichen" in cli("health", "scheduler", expect=1).stderr
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite'}")
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("CELERY_BROKER_URL", "memory://")
    services = build(Settings.from_env(), "none")
    try:
        make_scheduler(services).get_job("relay").func(services)  # what its interval runs
    finally:
        services.database.dispose()
    cli("health", "scheduler")
