"""The domain's refusals to coordinators in both languages of the pages: every text has its
English, with the same values to fill in; German stays the default (the command line's)."""
from __future__ import annotations

from string import Formatter

import pytest

from workflow.errors import InvalidInput
from workflow.partners import IMPORT_MESSAGES, GroupEntry, group_problems, parse_partner_csv
from workflow.policy import POLICY_MESSAGES, ReportingPolicy
from workflow.report_form import MESSAGES, TEMPLATE_MESSAGES, ReportTemplateDef
from workflow.wording import worded

TABLES = {"import": IMPORT_MESSAGES, "policy": POLICY_MESSAGES, "template": TEMPLATE_MESSAGES,
          "form": MESSAGES}


def fields(text: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(text) if name}


@pytest.mark.parametrize("table", TABLES.values(), ids=TABLES.keys())
def test_every_text_has_its_english_with_the_same_values(table):
    for key, texts in table.items():
        assert set(texts) == {"de", "en"}, key
        assert texts["de"].strip() and texts["en"].strip(), key
        assert texts["de"] != texts["en"], key
        assert fields(texts["de"]) == fields(texts["en"]), key


def test_german_is_the_default_and_stands_in_for_an_unknown_language():
    table = {"greeting": {"de": "Hallo {name}", "en": "Hello {name}"}}
    assert worded(table, "greeting", name="Ada") == "Hallo Ada"
    assert worded(table, "greeting", "fr", name="Ada") == "Hallo Ada"
    assert worded(table, "greeting", "en", name="Ada") == "Hello Ada"
    assert worded(table, "greeting", "en", name="{language}") == "Hello {language}"


def refused(call) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        call()
    return caught.value


def test_a_bad_csv_line_is_refused_in_the_language_asked_for():
    text = ("name,kind,contact_name,contact_email,deputy_email,head_name,head_email,language,"
            "joined_on\nKaputt,Zoo,x,x@example.org,,,,fr,2020-13-01\n")
    german = refused(lambda: parse_partner_csv(text))
    assert german.problems == [
        "Zeile 2: unbekannte Art 'Zoo' (erlaubt: Kommune, Kreis, Behörde, Polizei, Jobcenter, "
        "Verband, Unternehmen, Kooperation); language: 'fr' (erlaubt: de, en); joined_on: "
        "'2020-13-01' ist kein Datum (JJJJ-MM-TT)"]
    english = refused(lambda: parse_partner_csv(text, language="en"))
    assert english.args[0] == "Import cancelled, nothing was saved:"
    assert english.problems == [
        "Line 2: unknown kind 'Zoo' (allowed: Kommune, Kreis, Behörde, Polizei, Jobcenter, "
        "Verband, Unternehmen, Kooperation); language: 'fr' (allowed: de, en); joined_on: "
        "'2020-13-01' is not a date (YYYY-MM-DD)"]


def test_a_group_problem_names_its_place_in_the_language_asked_for():
    entries = [GroupEntry("A", None, "B"), GroupEntry("B", 4, "C"), GroupEntry("C", 5, ""),
               GroupEntry("D", 6, "A")]
    assert group_problems(entries, language="en") == [
        "Already saved: 'A' is a member of 'B' (line 4) and has members of its own: 'D' "
        "(line 6); members of a group cannot have members of their own",
        "Line 4: 'B' is a member of 'C' (line 5) and has members of its own: 'A' (already "
        "saved); members of a group cannot have members of their own"]
    assert group_problems(entries)[0].startswith("bereits gespeichert: 'A' ist Mitglied von 'B' "
                                                 "(Zeile 4)")


def test_a_policy_and_a_template_are_refused_in_the_language_asked_for():
    window = {"window_start": "10:00", "window_end": "09:00"}
    assert str(refused(lambda: ReportingPolicy.from_dict(window))) == \
        "Ungültige Berichtsregel: das Versandfenster endet vor seinem Beginn."
    assert str(refused(lambda: ReportingPolicy.from_dict(window, language="en"))) == \
        "Invalid reporting rule: the sending window ends before it begins."
    template = {"sections": [{"id": "a", "questions": [{"id": "q", "type": "decimal"}]}]}
    english = refused(lambda: ReportTemplateDef.from_dict(template, language="en"))
    assert english.args[0] == "The report template has errors:"
    assert english.problems == ["Section a, question q: unknown type 'decimal'",
                                "the template has no questions"]
    assert refused(lambda: ReportTemplateDef.from_dict(template)).problems == [
        "Abschnitt a, Frage q: unbekannter Typ 'decimal'", "die Vorlage hat keine Fragen"]
