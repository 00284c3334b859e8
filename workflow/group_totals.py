"""The members' figures of a group partner summed into the group's report. Pure functions.

A group partner (the Städtekooperation) reports once for its member cities; each member fills
its own part on the same form. Whole numbers and amounts add up across members; shares
(percentages), texts and choices do not, so they are left out.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from workflow.report_form import (Question, ReportTemplateDef, answer_number, readable_number,
                                  text_in)

SUMMED_TYPES = ("count", "number")


@dataclass(frozen=True)
class GroupTotal:
    question: Question
    total: Decimal
    contributors: int  # members whose part holds a number for this question
    members: int  # members of the group

    def label(self, language: str) -> str:
        return text_in(self.question.label, language)

    def value(self, language: str) -> str:
        """The sum as a person reads it, like any answer: 1.234,50 in German, 1,234.50 in
        English."""
        return readable_number(self.total, self.question.allowed_decimals, language)


def group_totals(template: ReportTemplateDef, parts: list[dict | None]) -> list[GroupTotal]:
    """Per summable question of ``template``, the sum over the members' ``parts`` (their answers;
    None for a member that has saved nothing yet), in the form's order. Answers that are not a
    number (a draft may hold anything) are left out and do not count as contributed."""
    totals = []
    for question in template.questions:
        if question.type not in SUMMED_TYPES:
            continue
        values = [value for value in (_number(question, (answers or {}).get(question.id))
                                      for answers in parts) if value is not None]
        totals.append(GroupTotal(question, sum(values, Decimal(0)), len(values), len(parts)))
    return totals


def _number(question: Question, raw) -> Decimal | None:
    if not isinstance(raw, str) or not raw.strip():
        return None
    try:
        value = answer_number(question, raw)
    except ValueError:
        return None
    return value if value is not None and value.is_finite() else None
