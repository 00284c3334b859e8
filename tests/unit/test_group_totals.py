"""The members' figures summed into a group partner's report."""
from __future__ import annotations

from decimal import Decimal

from workflow.group_totals import group_totals
from workflow.report_form import ReportTemplateDef

TEMPLATE = ReportTemplateDef.from_dict({
    "programme": "t", "year": 2027, "version": 1, "title": {"de": "Bericht"},
    "sections": [{"id": "s", "title": {"de": "Zahlen"}, "questions": [
        {"id": "staff", "type": "count", "label": {"de": "Beschäftigte", "en": "Staff"}},
        {"id": "share", "type": "percentage", "label": {"de": "Anteil"}},
        {"id": "budget", "type": "number", "label": {"de": "Mittel"}},
        {"id": "plans", "type": "long_text", "label": {"de": "Pläne"}},
    ]}]})


def by_id(totals):
    return {t.question.id: t for t in totals}


def test_whole_numbers_and_amounts_are_summed_shares_and_texts_are_not():
    totals = group_totals(TEMPLATE, [{"staff": "1200", "share": "20", "budget": "1.500,50",
                                      "plans": "viel"},
                                     {"staff": "800", "share": "10", "budget": "99.5"}])
    assert [t.question.id for t in totals] == ["staff", "budget"]
    assert by_id(totals)["staff"].total == 2000
    assert by_id(totals)["budget"].total == Decimal("1600.00")


def test_it_says_how_many_members_contributed():
    totals = by_id(group_totals(TEMPLATE, [{"staff": "10"}, None, {"staff": ""},
                                           {"staff": "zwölf"}, {"staff": "5", "budget": "1"}]))
    assert (totals["staff"].total, totals["staff"].contributors, totals["staff"].members) == (
        15, 2, 5)
    assert (totals["budget"].contributors, totals["budget"].members) == (1, 5)


def test_a_group_without_any_figures_sums_to_zero_from_nobody():
    totals = by_id(group_totals(TEMPLATE, []))
    assert totals["staff"].total == 0 and totals["staff"].contributors == 0


def test_sums_read_as_a_person_writes_them_in_each_language():
    total = by_id(group_totals(TEMPLATE, [{"budget": "1.234,5"}, {"budget": "0,25"}]))["budget"]
    assert total.value("de") == "1.234,75" and total.value("en") == "1,234.75"
    whole = by_id(group_totals(TEMPLATE, [{"budget": "12.499,5"}, {"budget": "1"}]))["budget"]
    assert whole.value("de") == "12.500,50" and whole.value("en") == "12,500.50"
    staff = by_id(group_totals(TEMPLATE, [{"staff": "1000"}, {"staff": "20"}]))["staff"]
    assert staff.value("de") == "1.020" and staff.label("en") == "Staff"
