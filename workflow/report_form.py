"""Report templates and answers: definition, parsing, validation, plausibility. Pure functions.

Answers are kept as the text the partner typed (a list for multiple choice, an attachment id for
files), so a draft never loses input; validation turns them into values when it matters.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

from babel import Locale
from babel.dates import format_date as babel_date
from babel.numbers import format_decimal

from workflow.errors import InvalidInput
from workflow.wording import worded

TYPES = {"number", "percentage", "count", "short_text", "long_text", "single_choice",
         "multiple_choice", "yes_no", "date", "file"}
NUMERIC = {"number", "percentage", "count"}
CHOICES = {"single_choice", "multiple_choice", "yes_no"}
FIELD_LIMIT = 20_000  # characters kept for any one answer, whatever the template says

MESSAGES = {
    "required": {"de": "Bitte füllen Sie dieses Feld aus.", "en": "Please fill in this field."},
    "choose": {"de": "Bitte wählen Sie eine Antwort.", "en": "Please choose an answer."},
    "not_number": {"de": "Bitte geben Sie eine Zahl ein, z. B. 12 oder 12,5.",
                   "en": "Please enter a number, e.g. 12 or 12.5."},
    "not_count": {"de": "Bitte geben Sie eine ganze Zahl ohne Nachkommastellen ein.",
                  "en": "Please enter a whole number."},
    "decimals": {"de": "Bitte höchstens {n} Nachkommastellen.",
                 "en": "Please use at most {n} decimal places."},
    "min": {"de": "Der Wert darf nicht kleiner als {n} sein.",
            "en": "The value must not be less than {n}."},
    "max": {"de": "Der Wert darf nicht größer als {n} sein.",
            "en": "The value must not be greater than {n}."},
    "too_long": {"de": "Bitte höchstens {n} Zeichen (jetzt {m}).",
                 "en": "Please use at most {n} characters (now {m})."},
    "bad_option": {"de": "Diese Auswahl gibt es nicht.", "en": "This choice does not exist."},
    "bad_date": {"de": "Bitte geben Sie ein Datum ein, z. B. 31.03.2027.",
                 "en": "Please enter a date, e.g. 2027-03-31."},
    "jump": {"de": "Im Vorjahr lag der Wert bei {old}. Bitte prüfen Sie die Änderung.",
             "en": "Last year the value was {old}. Please check the change."},
}
YES_NO = {"yes": {"de": "Ja", "en": "Yes"}, "no": {"de": "Nein", "en": "No"}}

# Why a report template is refused, for the coordinator who loads it, in the page's language
# (German on the command line). The JSON's own names (options, lte, id) stay as they are.
TEMPLATE_MESSAGES = {
    "faulty": {"de": "Die Berichtsvorlage ist fehlerhaft:",
               "en": "The report template has errors:"},
    "not_an_object": {"de": "Die Berichtsvorlage muss ein JSON-Objekt sein.",
                      "en": "The report template must be a JSON object."},
    "wrong_kind_of_value": {"de": "ein Wert hat die falsche Art ({reason})",
                            "en": "a value is of the wrong type ({reason})"},
    "unknown_key": {"de": "unbekannter Schlüssel '{key}'", "en": "unknown key '{key}'"},
    "question": {"de": "Abschnitt {section}, Frage {question}",
                 "en": "Section {section}, question {question}"},
    "unknown_keys": {"de": "unbekannte Schlüssel {keys}", "en": "unknown keys {keys}"},
    "unknown_type": {"de": "unbekannter Typ '{type}'", "en": "unknown type '{type}'"},
    "bad_id": {"de": "ungültige id", "en": "invalid id"},
    "id_twice": {"de": "id doppelt", "en": "id used twice"},
    "wrongly_typed": {"de": "falsche Art für {keys}", "en": "wrong type of value for {keys}"},
    "choices_need_options": {"de": "Auswahlfragen brauchen options",
                             "en": "choice questions need options"},
    "bad_rule": {"de": "Regel {rule}: nur 'lte' zwischen zwei Zahlenfragen erlaubt",
                 "en": "Rule {rule}: only 'lte' between two number questions is allowed"},
    "no_questions": {"de": "die Vorlage hat keine Fragen",
                     "en": "the template has no questions"},
    "out_of_range": {"de": "Die Berichtsvorlage ist fehlerhaft: {key} muss zwischen {low} und "
                           "{high} liegen.",
                     "en": "The report template has errors: {key} must be between {low} and "
                           "{high}."},
    "version_taken": {"de": "Version {version} der Vorlage {year} gibt es schon mit anderem "
                            "Inhalt: bitte die Versionsnummer erhöhen.",
                      "en": "Version {version} of the {year} template already exists with "
                            "different content: please increase the version number."},
}


def message(key: str, language: str, **values) -> str:
    return worded(MESSAGES, key, language, **values)


def template_message(key: str, language: str = "de", /, **values) -> str:
    return worded(TEMPLATE_MESSAGES, key, language, **values)


def text_in(labels: dict | str | None, language: str) -> str:
    if labels is None:
        return ""
    if isinstance(labels, str):
        return labels
    return labels.get(language) or labels.get("de") or ""


@dataclass(frozen=True)
class Question:
    id: str
    type: str
    label: dict
    required: bool = False
    help: dict | None = None
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    max_length: int | None = None
    options: tuple = ()
    accept: tuple = ()
    max_bytes: int = 5 * 1024 * 1024
    compare_last_year: bool = False
    max_change: float | None = None

    @property
    def allowed_decimals(self) -> int:
        if self.decimals is not None:
            return self.decimals
        return {"count": 0, "percentage": 1}.get(self.type, 2)

    @property
    def bounds(self) -> tuple[float | None, float | None]:
        if self.type == "percentage":
            return (0 if self.min is None else self.min, 100 if self.max is None else self.max)
        if self.type == "count":
            return (0 if self.min is None else self.min, self.max)
        return self.min, self.max

    @property
    def length_limit(self) -> int:
        default = {"short_text": 200, "long_text": 4000}.get(self.type, 200)
        return min(self.max_length or default, FIELD_LIMIT)

    def option_label(self, value: str, language: str) -> str:
        for option in self.options:
            if option["value"] == value:
                return text_in(option["label"], language)
        return value


@dataclass(frozen=True)
class Section:
    id: str
    title: dict
    questions: tuple[Question, ...]
    intro: dict | None = None


@dataclass(frozen=True)
class Rule:
    id: str
    type: str
    left: str
    right: str
    message: dict


@dataclass(frozen=True)
class QuestionText:
    """A question as the form shows it in one language: its wording (label, help, each option's
    label) and what its field needs, worked out once rather than on every page view."""
    label: str
    help: str
    options: tuple[tuple[str, str], ...]  # (value, label)
    described: str  # the ids of the help and format notes (aria-describedby), errors aside
    choices: bool  # answered by choosing: a fieldset of radio buttons or checkboxes
    numeric: bool
    length_limit: int
    accept: str  # the file types, as the input's accept attribute

    @classmethod
    def of(cls, question: Question, language: str) -> "QuestionText":
        help_text = text_in(question.help, language)
        notes = ([f"{question.id}-help"] if help_text else []) + \
            ([f"{question.id}-format"] if question.type == "date" else [])
        return cls(text_in(question.label, language), help_text,
                   tuple((o["value"], text_in(o["label"], language)) for o in question.options),
                   " ".join(notes), question.type in CHOICES, question.type in NUMERIC,
                   question.length_limit, ",".join(question.accept))


@dataclass(frozen=True)
class ReportTemplateDef:
    programme: str
    year: int
    version: int
    title: dict
    sections: tuple[Section, ...]
    rules: tuple[Rule, ...] = ()
    intro: dict | None = None
    by_id: dict = field(default_factory=dict, compare=False, repr=False)
    _texts: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def questions(self) -> list[Question]:
        return [q for s in self.sections for q in s.questions]

    def texts(self, language: str) -> dict[str, QuestionText]:
        """Each question's wording in ``language`` (question id -> text), worked out once: the
        form shows every label, help and option on every page view."""
        found = self._texts.get(language)
        if found is None:
            found = {q.id: QuestionText.of(q, language) for q in self.questions}
            self._texts[language] = found
        return found

    def question(self, question_id: str) -> Question | None:
        return self.by_id.get(question_id)

    @classmethod
    def from_dict(cls, data: dict, *, language: str = "de") -> "ReportTemplateDef":
        """Build and check a template; any problem is an InvalidInput naming where it is,
        worded in ``language``."""
        try:
            return cls._from_dict(data, language)
        except (AttributeError, TypeError, ValueError, KeyError) as exc:
            # A value of the wrong kind where the checks below expect another: say so plainly.
            raise InvalidInput(template_message("faulty", language), [
                template_message("wrong_kind_of_value", language, reason=exc)]) from None

    @classmethod
    def _from_dict(cls, data: dict, language: str) -> "ReportTemplateDef":
        def say(key: str, /, **values) -> str:
            return template_message(key, language, **values)

        problems: list[str] = []
        allowed_top = {"programme", "year", "version", "title", "intro", "sections", "rules"}
        if not isinstance(data, dict):
            raise InvalidInput(say("not_an_object"))
        problems += [say("unknown_key", key=k) for k in sorted(set(data) - allowed_top)]
        sections, by_id = [], {}
        question_keys = set(Question.__dataclass_fields__)
        for s_index, raw_section in enumerate(data.get("sections") or []):
            questions = []
            for raw in raw_section.get("questions") or []:
                where = say("question", section=raw_section.get("id", s_index),
                            question=raw.get("id", "?"))
                unknown = set(raw) - question_keys
                if unknown:
                    problems.append(f"{where}: {say('unknown_keys', keys=sorted(unknown))}")
                    continue
                if raw.get("type") not in TYPES:
                    problems.append(f"{where}: {say('unknown_type', type=raw.get('type'))}")
                    continue
                if not re.fullmatch(r"[a-z][a-z0-9_]{0,60}", str(raw.get("id", ""))):
                    problems.append(f"{where}: {say('bad_id')}")
                    continue
                if raw["id"] in by_id:
                    problems.append(f"{where}: {say('id_twice')}")
                    continue
                wrong = _wrongly_typed(raw)
                if wrong:
                    problems.append(f"{where}: {say('wrongly_typed', keys=', '.join(wrong))}")
                    continue
                if raw["type"] in ("single_choice", "multiple_choice") and not raw.get("options"):
                    problems.append(f"{where}: {say('choices_need_options')}")
                    continue
                question = Question(**{**raw, "options": tuple(raw.get("options") or ()),
                                       "accept": tuple(raw.get("accept") or ())})
                by_id[question.id] = question
                questions.append(question)
            sections.append(Section(raw_section.get("id", f"s{s_index}"),
                                    raw_section.get("title", {}), tuple(questions),
                                    raw_section.get("intro")))
        rules = []
        for raw in data.get("rules") or []:
            rule = Rule(raw.get("id", ""), raw.get("type", ""), raw.get("left", ""),
                        raw.get("right", ""), raw.get("message", {}))
            numeric = all(by_id.get(q) and by_id[q].type in NUMERIC for q in (rule.left, rule.right))
            if rule.type != "lte" or not numeric:
                problems.append(say("bad_rule", rule=rule.id))
            rules.append(rule)
        if not sections or not by_id:
            problems.append(say("no_questions"))
        if problems:
            raise InvalidInput(say("faulty"), problems)
        for key, default in (("year", 0), ("version", 1)):
            value = data.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidInput(say("faulty"), [say("wrongly_typed", keys=key)])
        return cls(str(data.get("programme", "")), int(data.get("year", 0)),
                   int(data.get("version", 1)), data.get("title", {}), tuple(sections),
                   tuple(rules), data.get("intro"), by_id)


_NUMBERS = ("min", "max", "max_change")
_COUNTS = ("decimals", "max_length", "max_bytes")
_FLAGS = ("required", "compare_last_year")


LARGEST_BOUND = 10**15  # a bound beyond this is no bound a report needs (and not a float)
MOST_DECIMALS = 6


def _wrongly_typed(raw: dict) -> list[str]:
    """The question's options whose values are of the wrong kind (a text where a number goes,
    a number that is none: NaN, infinity, or beyond any figure a report holds)."""
    def number(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return (isinstance(value, int) or math.isfinite(value)) and abs(value) <= LARGEST_BOUND

    wrong = [k for k in _NUMBERS if raw.get(k) is not None and not number(raw[k])]
    wrong += [k for k in _COUNTS if raw.get(k) is not None
              and not (isinstance(raw[k], int) and not isinstance(raw[k], bool) and raw[k] >= 0)]
    if isinstance(raw.get("decimals"), int) and raw["decimals"] > MOST_DECIMALS:
        wrong.append("decimals")
    if "decimals" not in wrong and all(number(raw.get(k)) for k in ("min", "max")) \
            and raw["min"] > raw["max"]:
        wrong += ["min", "max"]
    wrong += [k for k in _FLAGS if k in raw and not isinstance(raw[k], bool)]
    wrong += [k for k in ("label", "help") if raw.get(k) is not None and not (
        isinstance(raw[k], dict) and all(isinstance(v, str) for v in raw[k].values()))]
    wrong += [k for k in ("options", "accept") if raw.get(k) is not None
              and not isinstance(raw[k], (list, tuple))]
    if isinstance(raw.get("options"), (list, tuple)) and not all(
            isinstance(o, dict) and isinstance(o.get("value"), str) for o in raw["options"]):
        wrong.append("options")
    return wrong


# Reading and checking answers ---------------------------------------------------------------------

def read_form(template: ReportTemplateDef, form, previous: dict | None = None) -> dict:
    """The answers posted in ``form`` (a mapping with ``getlist``); files keep their stored id."""
    answers = {}
    for question in template.questions:
        if question.type == "file":
            kept = form.get(question.id + "__keep") or (previous or {}).get(question.id)
            if kept and form.get(question.id + "__remove") != "1":
                answers[question.id] = str(kept)
            continue
        if question.type == "multiple_choice":
            answers[question.id] = [v[:200] for v in form.getlist(question.id)][:50]
            continue
        typed = CONTROL_CHARACTERS.sub("", (form.get(question.id) or "").replace("\r\n", "\n"))
        answers[question.id] = typed[:FIELD_LIMIT + 1]
        if question.type not in ("long_text",):
            answers[question.id] = answers[question.id].strip()
    return answers


# What no keyboard types into a form field (NUL and the other C0 controls but tab and newline).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MEANT_YEARS = (1900, 2100)  # a date typed into a form lies in a year a person means


def parse_number(raw: str, *, whole: bool = False) -> Decimal | None:
    """German or English notation: "12,5", "12.5", "12.500,50", "12,500.50", "1 234".

    With both marks the last one is the decimal mark and the other groups thousands. A lone
    comma is the German decimal comma ("1,5"), unless the figure is ``whole`` (a count, which has
    no decimals) or the commas group thousands more than once ("1,234,567"); a lone point groups
    thousands when it stands before exactly three digits ("1.234"). Digits are 0-9 only: other
    scripts' digits would be stored as numbers nobody typed."""
    text = raw.strip().replace("\u202f", "").replace("\u00a0", "").replace(" ", "")
    if not text:
        return None
    if "," in text and "." in text:
        point, comma = text.rindex("."), text.rindex(",")
        grouping, decimal = (",", ".") if point > comma else (".", ",")
        if not re.fullmatch(rf"-?[0-9]{{1,3}}(\{grouping}[0-9]{{3}})+\{decimal}[0-9]+", text):
            raise ValueError(raw)
        text = text.replace(grouping, "").replace(decimal, ".")
    elif "," in text:
        grouped = re.fullmatch(r"-?[0-9]{1,3}(,[0-9]{3})+", text)
        if grouped and (whole or text.count(",") > 1):
            text = text.replace(",", "")
        else:
            text = text.replace(",", ".")
    elif re.fullmatch(r"-?[0-9]{1,3}(\.[0-9]{3})+", text):
        text = text.replace(".", "")
    if not re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", text):
        raise ValueError(raw)
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(raw) from None


def answer_number(question: Question, raw: str) -> Decimal | None:
    """An answer to a number question as the figure it means (see ``parse_number``)."""
    return parse_number(raw, whole=question.type == "count")


def parse_date(raw: str) -> date | None:
    """31.03.2027 or 2027-03-31, in a year from 1900 to 2100; ValueError otherwise."""
    text = raw.strip()
    if not text:
        return None
    match = re.fullmatch(r"([0-9]{1,2})\.([0-9]{1,2})\.([0-9]{4})", text)
    if match:
        day, month, year = map(int, match.groups())
        value = date(year, month, day)
    elif re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        value = date.fromisoformat(text)
    else:
        raise ValueError(raw)
    if not MEANT_YEARS[0] <= value.year <= MEANT_YEARS[1]:
        raise ValueError(raw)
    return value


def _check_one(question: Question, raw, language: str) -> str | None:
    if question.type == "multiple_choice":
        valid = {o["value"] for o in question.options}
        return None if all(v in valid for v in raw or []) else message("bad_option", language)
    if not raw:
        return None
    if question.type in NUMERIC:
        try:
            value = answer_number(question, raw)
        except ValueError:
            return message("not_count" if question.type == "count" else "not_number", language)
        exponent = -value.as_tuple().exponent if value.as_tuple().exponent < 0 else 0
        if question.type == "count" and exponent:
            return message("not_count", language)
        if exponent > question.allowed_decimals:
            return message("decimals", language, n=question.allowed_decimals)
        low, high = question.bounds
        if low is not None and value < Decimal(str(low)):
            return message("min", language, n=_plain(low))
        if high is not None and value > Decimal(str(high)):
            return message("max", language, n=_plain(high))
        return None
    if question.type in ("short_text", "long_text"):
        if len(raw) > question.length_limit:
            return message("too_long", language, n=question.length_limit, m=len(raw))
        return None
    if question.type == "single_choice":
        return None if raw in {o["value"] for o in question.options} \
            else message("bad_option", language)
    if question.type == "yes_no":
        return None if raw in YES_NO else message("bad_option", language)
    if question.type == "date":
        try:
            parse_date(raw)
        except ValueError:
            return message("bad_date", language)
    return None


def check(template: ReportTemplateDef, answers: dict, *, complete: bool,
          language: str = "de") -> dict[str, str]:
    """Field errors (question id -> message). ``complete`` adds required fields and the rules."""
    errors = {}
    for question in template.questions:
        raw = answers.get(question.id)
        problem = _check_one(question, raw, language)
        if problem is None and complete and question.required and not raw:
            problem = message("choose" if question.type in ("single_choice", "multiple_choice",
                                                            "yes_no") else "required", language)
        if problem:
            errors[question.id] = problem
    if complete:
        values = numbers(template, answers)
        for rule in template.rules:
            left, right = values.get(rule.left), values.get(rule.right)
            # A value already refused (e.g. below its minimum) is not compared again.
            if left is not None and right is not None and left > right \
                    and rule.left not in errors and rule.right not in errors:
                errors[rule.left] = text_in(rule.message, language)
    return errors


def numbers(template: ReportTemplateDef, answers: dict) -> dict[str, Decimal]:
    values = {}
    for question in template.questions:
        if question.type in NUMERIC and answers.get(question.id):
            try:
                values[question.id] = answer_number(question, answers[question.id])
            except ValueError:
                continue
    return values


def jumps(template: ReportTemplateDef, answers: dict, last_year: dict | None,
          language: str = "de") -> dict[str, str]:
    """Big changes against last year's accepted report: questions to the partner, not errors."""
    if not last_year:
        return {}
    now, before = numbers(template, answers), numbers(template, last_year)
    warnings = {}
    for question in template.questions:
        if not question.compare_last_year or question.max_change is None:
            continue
        new, old = now.get(question.id), before.get(question.id)
        if new is not None and old is not None and abs(new - old) > Decimal(str(question.max_change)):
            warnings[question.id] = message("jump", language, old=display(question,
                                                                          last_year[question.id],
                                                                          language))
    return warnings


def display(question: Question, raw, language: str = "de", attachments: dict | None = None) -> str:
    """The answer as a person reads it (review page, receipt, print)."""
    if raw in (None, "", []):
        return "—"
    if question.type == "multiple_choice":
        return ", ".join(question.option_label(v, language) for v in raw)
    if question.type == "single_choice":
        return question.option_label(raw, language)
    if question.type == "yes_no":
        return text_in(YES_NO.get(raw), language) or raw
    if question.type == "file":
        return (attachments or {}).get(str(raw), "—")
    if question.type == "date":
        try:
            day = parse_date(raw)
        except ValueError:
            return raw
        return day.strftime("%d.%m.%Y") if language == "de" else babel_date(day, "d MMMM y",
                                                                            locale=LOCALES["en"])
    if question.type in NUMERIC:
        try:
            value = answer_number(question, raw)
        except ValueError:
            return raw
        text = readable_number(value, question.allowed_decimals, language)
        return f"{text} %" if question.type == "percentage" else text
    return raw


def readable_number(value: Decimal, decimals: int, language: str) -> str:
    """12.500,50 in German, 12,500.50 in English: a whole number without decimals, any other
    with the question's number of them (or as many as it has, should it have more)."""
    places = 0 if value == value.to_integral() else max(decimals, -value.as_tuple().exponent)
    pattern = "#,##0" + ("." + "0" * places if places else "")
    return format_decimal(value, format=pattern, locale=LOCALES["en" if language == "en" else "de"],
                          decimal_quantization=False)


LOCALES = {language: Locale.parse(language) for language in ("de", "en")}  # parsed once


def changes(template: ReportTemplateDef, answers: dict, previous: dict | None) -> list[Question]:
    """Questions whose answer differs from the previous report (for the review page)."""
    if not previous:
        return []
    return [q for q in template.questions if q.type != "file"
            and (answers.get(q.id) or None) != (previous.get(q.id) or None)]


def _plain(value) -> str:
    text = format(Decimal(str(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
