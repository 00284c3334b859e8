"""A complete, valid 2027 report as the shipped template expects it."""
from pathlib import Path

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
