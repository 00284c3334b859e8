"""The shipped report template, and a complete, valid 2027 report as it expects it."""
import json
from pathlib import Path

from workflow.report_templates import load_template

TEMPLATE_FILE = (Path(__file__).resolve().parents[2] / "reportcycles" / "data" / "report_templates"
                 / "nrw-vielfalt-2027.json")

VALID_ANSWERS = {
    "staff_total": "1200",
    "staff_immigration_share": "18,5",
    "share_surveyed": "yes",
    "share_method": "survey",
    "staff_trained": "140",
    "trainees_total": "40",
    "trainees_immigration": "12",
    "selection_criterion": "yes",
    "plans_next_year": "Mehrsprachige Stellenanzeigen und ein Mentoring-Programm.",
}


def load_shipped_template(uow, programme, year: int = 2027):
    """The shipped form, stored as ``year``'s version 1 (a cycle opens only with a form)."""
    definition = json.loads(TEMPLATE_FILE.read_text(encoding="utf-8"))
    return load_template(uow, programme, {**definition, "year": year})
