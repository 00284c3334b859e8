"""What coordinators hand on: a cycle's status and answers per partner, and the yearly summary
across partners for the initiative's annual meeting. Rows carry typed values (numbers stay numbers);
the file formats are the spreadsheet adapter's business (`infra/spreadsheets.py`)."""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from sqlalchemy import select

from workflow.errors import NotFound
from workflow.models import (PARTNER_KIND_LABELS, Attachment, Cycle, Partner, ReportTemplate,
                             Submission)
from workflow.report_form import NUMERIC, ReportTemplateDef, answer_number, display, text_in
from workflow.states import SubmissionState
from workflow.uow import UnitOfWork

CHUNK = 1000
RECEIVED = (SubmissionState.SUBMITTED, SubmissionState.ACCEPTED)  # a report the ministry may count

LABELS = {
    "partner": {"de": "Partner", "en": "Partner"},
    "kind": {"de": "Art", "en": "Kind"},
    "group": {"de": "Mitglied von", "en": "Member of"},
    "state": {"de": "Zustand", "en": "State"},
    "level": {"de": "Eskalationsstufe", "en": "Escalation level"},
    "due_on": {"de": "Frist", "en": "Deadline"},
    "submitted_at": {"de": "Eingereicht am (UTC)", "en": "Submitted at (UTC)"},
    "non_reporting": {"de": "Säumig", "en": "Non-reporting"},
    "figure": {"de": "Kennzahl", "en": "Figure"},
    "value": {"de": "Wert", "en": "Value"},
    "answered": {"de": "Berichte mit Angabe", "en": "Reports answering"},
    "partners": {"de": "Partner im Berichtsjahr", "en": "Partners in the reporting year"},
    "exempted": {"de": "Davon befreit", "en": "Of these exempted"},
    "received": {"de": "Eingegangene Berichte (eingereicht oder angenommen)",
                 "en": "Reports received (submitted or accepted)"},
    "share": {"de": "Anteil eingegangener Berichte (in %)", "en": "Share of reports received (in %)"},
    "employees": {"de": "Beschäftigte laut Partnerliste (alle Partner)",
                  "en": "Employees according to the partner list (all partners)"},
    "sum": {"de": "Summe", "en": "total"},
    "mean": {"de": "Mittelwert", "en": "mean"},
    "yes": {"de": "Anzahl „Ja“", "en": "number of “yes”"},
}
STATE_LABELS = {
    "invited": {"de": "eingeladen", "en": "invited"}, "opened": {"de": "geöffnet", "en": "opened"},
    "draft": {"de": "Entwurf", "en": "draft"}, "submitted": {"de": "eingereicht", "en": "submitted"},
    "returned": {"de": "zurückgegeben", "en": "returned"},
    "accepted": {"de": "angenommen", "en": "accepted"},
    "exempted": {"de": "befreit", "en": "exempted"},
}
YES_NO_VALUES = {"yes": {"de": "ja", "en": "yes"}, "no": {"de": "nein", "en": "no"}}


def label(key: str, language: str) -> str:
    return LABELS[key][language if language in ("de", "en") else "de"]


@dataclass(frozen=True)
class Table:
    """A sheet: a title, its header and its rows (an iterator: a cycle's rows are streamed)."""

    title: str
    header: list[str]
    rows: Iterator[list]
    filename: str


@dataclass
class _Templates:
    uow: UnitOfWork
    loaded: dict = field(default_factory=dict)

    def __call__(self, template_id: int | None) -> ReportTemplateDef | None:
        if template_id is None:
            return None
        if template_id not in self.loaded:
            row = self.uow.session.get(ReportTemplate, template_id)
            self.loaded[template_id] = ReportTemplateDef.from_dict(row.definition)
        return self.loaded[template_id]


def _cycle(uow: UnitOfWork, cycle_id: int) -> Cycle:
    cycle = uow.session.get(Cycle, cycle_id)
    if cycle is None:
        raise NotFound(f"Berichtszyklus {cycle_id} gibt es nicht")
    return cycle


def _questions(uow: UnitOfWork, cycle: Cycle) -> ReportTemplateDef | None:
    """The form most of the cycle's reports use (the cycle's own; all are the same in practice)."""
    template_id = uow.session.scalar(
        select(Submission.template_id).where(Submission.cycle_id == cycle.id,
                                             Submission.template_id.isnot(None)).limit(1))
    return _Templates(uow)(template_id)


def typed_answer(question, raw, language: str, attachments: dict):
    """An answer as a spreadsheet cell: numbers as numbers, dates as dates, the rest as text."""
    if raw in (None, "", []):
        return None
    if question.type in NUMERIC:
        try:
            value = answer_number(question, raw)
        except ValueError:
            return str(raw)
        return int(value) if question.type == "count" and value == value.to_integral() else value
    if question.type == "date":
        try:
            return date.fromisoformat(raw)
        except (TypeError, ValueError):
            return str(raw)
    if question.type == "yes_no":
        return text_in(YES_NO_VALUES.get(raw), language) or str(raw)
    return display(question, raw, language, attachments)


def cycle_table(uow: UnitOfWork, cycle_id: int, language: str) -> Table:
    """One row per partner of the cycle: where its report stands, and its answers."""
    cycle = _cycle(uow, cycle_id)
    template = _questions(uow, cycle)
    questions = template.questions if template else []
    header = [label(k, language) for k in ("partner", "kind", "group", "state", "level",
                                           "due_on", "submitted_at", "non_reporting")]
    header += [text_in(q.label, language) for q in questions]
    slug = cycle.programme.slug
    return Table(title=f"{cycle.programme.name} {cycle.year}"[:200], header=header,
                 rows=_cycle_rows(uow, cycle.id, questions, language),
                 filename=f"{slug}-{cycle.year}-berichte")


def _cycle_rows(uow: UnitOfWork, cycle_id: int, questions, language: str) -> Iterator[list]:
    session = uow.session
    group_names = dict(session.execute(
        select(Partner.id, Partner.name).where(Partner.id.in_(
            select(Partner.group_id).join(Submission, Submission.partner_id == Partner.id)
            .where(Submission.cycle_id == cycle_id, Partner.group_id.isnot(None))))).all())
    after = ""
    while True:  # keyset pages by name (unique in a programme): memory stays flat at any size
        page = session.execute(
            select(Submission.id, Submission.state, Submission.escalation_level,
                   Submission.due_on, Submission.submitted_at, Submission.non_reporting,
                   Submission.answers, Partner.name, Partner.kind, Partner.group_id)
            .join(Partner, Partner.id == Submission.partner_id)
            .where(Submission.cycle_id == cycle_id, Partner.name > after)
            .order_by(Partner.name).limit(CHUNK)).all()
        if not page:
            return
        after = page[-1].name
        files = defaultdict(dict)
        for submission_id, storage_key, filename in session.execute(
                select(Attachment.submission_id, Attachment.storage_key, Attachment.filename)
                .where(Attachment.submission_id.in_([r.id for r in page]))):
            files[submission_id][storage_key] = filename
        for row in page:
            answers = row.answers or {}
            yield ([row.name, text_in({"de": PARTNER_KIND_LABELS[row.kind], "en": row.kind.value},
                                      language),
                    group_names.get(row.group_id), text_in(STATE_LABELS[row.state], language),
                    row.escalation_level, row.due_on,
                    row.submitted_at.replace(tzinfo=None) if row.submitted_at else None,
                    text_in(YES_NO_VALUES["yes" if row.non_reporting else "no"], language)]
                   + [typed_answer(q, answers.get(q.id), language, files[row.id])
                      for q in questions])


@dataclass
class _Figure:
    total: Decimal = Decimal(0)
    answered: int = 0
    yes: int = 0
    options: Counter = field(default_factory=Counter)


def summary_table(uow: UnitOfWork, cycle_id: int, language: str) -> Table:
    """The year at a glance: partners, reports received, employees, and each key figure over the
    reports received (sums of counts and amounts, means of shares, how many said yes, how many
    chose each option)."""
    cycle = _cycle(uow, cycle_id)
    session = uow.session
    template = _questions(uow, cycle)
    questions = [q for q in (template.questions if template else [])
                 if q.type in NUMERIC | {"yes_no", "single_choice", "multiple_choice"}]
    states = Counter()
    employees = 0
    figures = defaultdict(_Figure)
    after = 0
    while True:
        page = session.execute(
            select(Submission.id, Submission.state, Submission.answers, Partner.employees)
            .join(Partner, Partner.id == Submission.partner_id)
            .where(Submission.cycle_id == cycle.id, Submission.id > after)
            .order_by(Submission.id).limit(CHUNK)).all()
        if not page:
            break
        after = page[-1].id
        for row in page:
            states[row.state] += 1
            employees += row.employees or 0
            if row.state not in RECEIVED:
                continue
            for question in questions:
                _count(figures[question.id], question, (row.answers or {}).get(question.id))
    partners = sum(states.values())
    exempted = states[SubmissionState.EXEMPTED]
    received = sum(states[s] for s in RECEIVED)
    expected = partners - exempted
    share = (Decimal(received * 100) / expected).quantize(Decimal("0.1")) if expected else None
    rows = [[label("partners", language), partners, partners],
            [label("exempted", language), exempted, partners],
            [label("received", language), received, partners],
            [label("share", language), share, expected],
            [label("employees", language), employees, partners]]
    for question in questions:
        rows.extend(_figure_rows(question, figures[question.id], language))
    return Table(title=f"{cycle.programme.name} {cycle.year}"[:200],
                 header=[label("figure", language), label("value", language),
                         label("answered", language)],
                 rows=iter(rows), filename=f"{cycle.programme.slug}-{cycle.year}-zusammenfassung")


def _count(figure: _Figure, question, raw):
    if raw in (None, "", []):
        return
    if question.type in NUMERIC:
        try:
            figure.total += answer_number(question, raw)
        except ValueError:
            return
    elif question.type == "yes_no":
        figure.yes += raw == "yes"
    elif question.type == "single_choice":
        figure.options[raw] += 1
    else:
        figure.options.update(raw)
    figure.answered += 1


def _figure_rows(question, figure: _Figure, language: str) -> list[list]:
    name = text_in(question.label, language)
    if question.type == "percentage":
        mean = (figure.total / figure.answered).quantize(Decimal("0.1")) if figure.answered \
            else None
        return [[f"{name}: {label('mean', language)}", mean, figure.answered]]
    if question.type in NUMERIC:
        total = int(figure.total) if question.type == "count" else figure.total
        return [[f"{name}: {label('sum', language)}", total, figure.answered]]
    if question.type == "yes_no":
        return [[f"{name}: {label('yes', language)}", figure.yes, figure.answered]]
    return [[f"{name}: {question.option_label(option['value'], language)}",
             figure.options[option["value"]], figure.answered] for option in question.options]

