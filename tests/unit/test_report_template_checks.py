"""A report template is checked when it is loaded: what passes must not fail a partner later."""
import json
import math
from pathlib import Path

import pytest

from workflow.errors import InvalidInput
from workflow.report_form import ReportTemplateDef, check

BUNDLED = Path(__file__).parents[2] / "reportcycles/data/report_templates/nrw-vielfalt-2027.json"


def with_staff(**options) -> dict:
    data = json.loads(BUNDLED.read_text())
    for section in data["sections"]:
        for question in section.get("questions", []):
            if question["id"] == "staff_total":
                question.update(options)
    return data


@pytest.mark.parametrize("options", [
    {"min": math.nan}, {"max": math.inf}, {"min": -math.inf}, {"max": 1e308},
    {"max": 10**400}, {"min": 10, "max": 1}, {"decimals": 1_000_000}])
def test_bounds_that_are_no_numbers_or_contradict_each_other_are_refused(options):
    with pytest.raises(InvalidInput) as refused:
        ReportTemplateDef.from_dict(with_staff(**options))
    assert "falsche Art für" in " ".join(refused.value.problems)


@pytest.mark.parametrize("year", ["2027", 2027.5, True])
def test_the_year_must_be_a_whole_number(year):
    with pytest.raises(InvalidInput):
        ReportTemplateDef.from_dict({**with_staff(), "year": year})


def test_a_template_that_passes_checks_any_figure_without_an_error():
    template = ReportTemplateDef.from_dict(with_staff(min=0, max=1_000_000))
    for typed in ("5", "-5", "99999999999", "1e309", "NaN"):
        check(template, {"staff_total": typed}, complete=True)
