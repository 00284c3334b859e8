"""How an answer reads on the review page, the partner page, the receipt and the print view."""
from decimal import Decimal

from workflow.report_form import Question, display


def test_numbers_are_grouped_and_amounts_keep_their_cents_in_each_language():
    amount = Question("budget_eur", "number", {}, decimals=2)
    assert display(amount, "12.500,50", "de") == "12.500,50"
    assert display(amount, "12500.5", "en") == "12,500.50"
    assert display(amount, "12500", "de") == "12.500"
    count = Question("staff_total", "count", {})
    assert display(count, "80000", "de") == "80.000" and display(count, "80000", "en") == "80,000"
    share = Question("share", "percentage", {})
    assert display(share, "18.5", "de") == "18,5 %" and display(share, "18,5", "en") == "18.5 %"


def test_a_value_that_is_no_number_is_shown_as_typed():
    assert display(Question("staff_total", "count", {}), "viele", "de") == "viele"


def test_dates_read_as_on_every_other_page_of_the_language():
    day = Question("selection_decision_date", "date", {})
    assert display(day, "2026-03-15", "de") == "15.03.2026"
    assert display(day, "2026-03-15", "en") == "15 March 2026"


def test_a_rule_between_two_figures_is_not_checked_against_a_figure_already_refused():
    import json
    from pathlib import Path

    from workflow.report_form import ReportTemplateDef, check
    path = Path(__file__).parents[2] / "reportcycles/data/report_templates/nrw-vielfalt-2027.json"
    template = ReportTemplateDef.from_dict(json.loads(path.read_text()))
    errors = check(template, {"staff_total": "-3", "trainees_total": "2"}, complete=True)
    assert errors["staff_total"] == "Der Wert darf nicht kleiner als 0 sein."
    assert "trainees_total" not in errors
    errors = check(template, {"staff_total": "1", "trainees_total": "2"}, complete=True)
    assert "nicht größer sein als die Zahl aller Beschäftigten" in errors["trainees_total"]


def test_figures_in_other_scripts_dates_beyond_any_meant_year_and_control_bytes_are_not_kept():
    import json
    from pathlib import Path

    from werkzeug.datastructures import MultiDict

    from workflow.report_form import ReportTemplateDef, check, read_form
    path = Path(__file__).parents[2] / "reportcycles/data/report_templates/nrw-vielfalt-2027.json"
    template = ReportTemplateDef.from_dict(json.loads(path.read_text()))
    errors = check(template, {"staff_total": "١٢", "selection_decision_date": "0001-01-01"},
                   complete=False)
    assert errors["staff_total"].startswith("Bitte geben Sie eine ganze Zahl")
    assert errors["selection_decision_date"].startswith("Bitte geben Sie ein Datum ein")
    for typed in ("9999-12-31", "2027-W01-1", "20270101", "31.12.1899"):
        assert "selection_decision_date" in check(
            template, {"selection_decision_date": typed}, complete=False), typed
    assert check(template, {"selection_decision_date": "31.03.2027"}, complete=False) == {}
    answers = read_form(template, MultiDict({"reporting_person": "Ana\x00 Lima\x1b[31m",
                                             "plans_next_year": "Zeile 1\r\nZeile 2\tTab"}))
    assert answers["reporting_person"] == "Ana Lima[31m"
    assert answers["plans_next_year"] == "Zeile 1\nZeile 2\tTab"


def test_figures_are_read_in_german_and_in_english_notation():
    import json
    from pathlib import Path

    from workflow.report_form import ReportTemplateDef, check, numbers
    path = Path(__file__).parents[2] / "reportcycles/data/report_templates/nrw-vielfalt-2027.json"
    template = ReportTemplateDef.from_dict(json.loads(path.read_text()))
    typed = {"budget_eur": "12,500.50", "staff_total": "1,250"}  # as an English partner writes
    assert check(template, typed, complete=False) == {}
    read = numbers(template, typed)
    assert read["budget_eur"] == 12500.5 and read["staff_total"] == 1250
    assert numbers(template, {"budget_eur": "12.500,50", "staff_total": "1.250"}) == read
    # A lone comma in an amount is the German decimal comma: 1,25 € (never silently 125).
    assert numbers(template, {"budget_eur": "1,25"})["budget_eur"] == Decimal("1.25")
    amount = Question("budget_eur", "number", {}, decimals=2)
    assert display(amount, "12,500.50", "en") == "12,500.50"
