"""How an answer reads on the review page, the partner page, the receipt and the print view."""
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
