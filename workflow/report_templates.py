"""Report templates: versioned forms per programme and year, and the one a cycle invites to."""
from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from workflow.errors import InvalidInput, NotFound
from workflow.models import Programme, ReportTemplate, Submission
from workflow.report_form import ReportTemplateDef, template_message
from workflow.uow import UnitOfWork


TEMPLATE_YEARS = (2000, 2100)  # as for cycles
MAX_VERSION = 1_000_000


def load_template(uow: UnitOfWork, programme: Programme, data: dict, *,
                  language: str = "de") -> ReportTemplate:
    """Store a template definition (checked first); the same version twice is a no-op. A refusal
    is worded in ``language``."""
    definition = ReportTemplateDef.from_dict(data, language=language)
    for key, value, low, high in (("year", definition.year, *TEMPLATE_YEARS),
                                  ("version", definition.version, 1, MAX_VERSION)):
        if not low <= value <= high:  # a database refuses whole numbers beyond its integers
            raise InvalidInput(template_message("out_of_range", language, key=key, low=low,
                                                high=high))
    existing = uow.session.scalars(select(ReportTemplate).where(
        ReportTemplate.programme_id == programme.id, ReportTemplate.year == definition.year,
        ReportTemplate.version == definition.version)).first()
    if existing is not None:
        if existing.definition != data:
            raise InvalidInput(template_message("version_taken", language,
                                               version=definition.version, year=definition.year))
        return existing
    row = ReportTemplate(programme_id=programme.id, year=definition.year,
                         version=definition.version, definition=data)
    uow.session.add(row)
    uow.session.flush()
    return row


def load_template_file(uow: UnitOfWork, programme: Programme, path: Path) -> ReportTemplate:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"Datei nicht gefunden: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path} ist kein gültiges JSON in UTF-8: {exc}") from None
    except RecursionError:
        raise InvalidInput(f"{path} ist zu tief verschachtelt für eine Berichtsvorlage.") from None
    except OSError as exc:
        raise InvalidInput(f"{path} lässt sich nicht lesen: {exc.strerror or exc}") from None
    return load_template(uow, programme, data)


def newest_template(uow: UnitOfWork, programme_id: int, year: int) -> ReportTemplate | None:
    return uow.session.scalars(select(ReportTemplate).where(
        ReportTemplate.programme_id == programme_id, ReportTemplate.year == year)
        .order_by(ReportTemplate.version.desc()).limit(1)).first()


def template_for_new_cycle(uow: UnitOfWork, programme: Programme, year: int, *,
                           now: datetime) -> tuple[ReportTemplate, int | None]:
    """The form a new cycle invites to: the year's own, else the latest earlier year's carried
    forward as version 1 of this year (returns the year it came from). No form, no cycle."""
    own = newest_template(uow, programme.id, year)
    if own is not None:
        return own, None
    earlier = uow.session.scalars(select(ReportTemplate).where(
        ReportTemplate.programme_id == programme.id, ReportTemplate.year < year)
        .order_by(ReportTemplate.year.desc(), ReportTemplate.version.desc()).limit(1)).first()
    if earlier is None:
        raise InvalidInput(
            f"Für {year} gibt es keine Berichtsvorlage und keine frühere, die übernommen werden "
            "könnte: zuerst eine laden, die mitgelieferte mit `reportcycles templates load "
            "nrw-vielfalt-2027` oder eine eigene mit `reportcycles templates load DATEI.json`.")
    definition = copy.deepcopy(earlier.definition)
    definition["year"], definition["version"] = year, 1
    row = ReportTemplate(programme_id=programme.id, year=year, version=1, definition=definition,
                         created_at=now)
    uow.session.add(row)
    uow.session.flush()
    return row, earlier.year


def template_of(uow: UnitOfWork, submission: Submission) -> ReportTemplateDef:
    """The template a submission is written on: the one it started with, else the newest."""
    row = uow.session.get(ReportTemplate, submission.template_id) if submission.template_id else \
        newest_template(uow, submission.cycle.programme_id, submission.cycle.year)
    if row is None:
        raise NotFound(f"Für {submission.cycle.year} ist noch keine Berichtsvorlage hinterlegt.")
    if submission.template_id != row.id:
        submission.template_id = row.id
    # The session's identity map keeps a row only while something refers to it; a request asks
    # for its template more than once (the view, then the use case), so keep it for the session.
    uow.session.info.setdefault("report_templates", set()).add(row)
    return _parsed(row)


# A stored template never changes (load_template refuses new content under an old version), so
# each row is checked and parsed once per process, not on every page. The key names the row in
# whichever database it lives (tests open many in one process).
_PARSED: dict[tuple, ReportTemplateDef] = {}


def _parsed(row: ReportTemplate) -> ReportTemplateDef:
    key = (row.id, row.programme_id, row.year, row.version, row.created_at)
    parsed = _PARSED.get(key)
    if parsed is None:
        parsed = ReportTemplateDef.from_dict(row.definition)
        if len(_PARSED) >= 256:
            _PARSED.clear()
        _PARSED[key] = parsed
    return parsed
