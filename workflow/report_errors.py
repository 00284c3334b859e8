"""What the partner is told when the report refuses a change: the named errors and the
messages in the page's language."""
from __future__ import annotations

from workflow.errors import DomainError, InvalidInput


class DraftConflict(DomainError):
    """Someone else saved this report since the page was loaded."""


class IncompleteReport(InvalidInput):
    def __init__(self, errors: dict[str, str]):
        super().__init__("Der Bericht ist noch nicht vollständig.")
        self.errors = errors


class RequestProblems(InvalidInput):
    """A partner's request with problems in named fields: all of them at once, by field."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(" ".join(errors.values()))
        self.errors = errors


# What the partner is told when a request is refused, in the page's language.
PARTNER_MESSAGES = {
    "already_submitted": ("Dieser Bericht ist bereits eingereicht.",
                          "This report has already been submitted."),
    "members_missing": ("{n} Mitglieder haben ihren Teil noch nicht fertig gemeldet: {names}.",
                        "{n} members have not yet marked their part as finished: {names}."),
    "no_extension_needed": ("Für einen eingereichten Bericht ist keine Verlängerung nötig.",
                            "A submitted report needs no extension."),
    "date_needed": ("Bitte geben Sie ein gültiges Datum an, z. B. 31.03.2027.",
                    "Please give a valid date, e.g. 2027-03-31."),
    "request_pending": ("Ihr Antrag vom {asked} auf eine Frist bis {day} liegt der "
                        "Koordinierungsstelle noch vor. Sie erhalten die Entscheidung per E-Mail.",
                        "Your request of {asked} for a deadline of {day} is still with the "
                        "coordination office. You will receive the decision by email."),
    "reason_needed": ("Bitte nennen Sie einen Grund (höchstens 2000 Zeichen).",
                      "Please give a reason (at most 2000 characters)."),
    "after_deadline": ("Das gewünschte Datum muss nach der jetzigen Frist ({due}) liegen.",
                       "The date you ask for must be after the current deadline ({due})."),
    "too_long_extension": ("Eine Verlängerung um mehr als ein Jahr ist nicht möglich.",
                           "An extension of more than a year is not possible."),
    "future_date": ("Bitte nennen Sie ein Datum in der Zukunft.",
                    "Please give a date in the future."),
    "too_far": ("Das Datum liegt zu weit nach der Frist: bitte beantragen Sie eine "
                "Fristverlängerung.",
                "The date is too far after the deadline: please request an extension."),
    "reason_missing": ("Bitte nennen Sie den Grund.", "Please give the reason."),
    "unknown_intent": ("Unbekannte Angabe.", "Unknown choice."),
    "group_submitted": ("Der gemeinsame Bericht ist bereits eingereicht.",
                        "The joint report has already been submitted."),
}



def partner_message(key: str, language: str, **values) -> str:
    german, english = PARTNER_MESSAGES[key]
    return (english if language == "en" else german).format(**values)
