"""What the contacts form accepts, as a pure rule (the duplicate check needs the database)."""
from __future__ import annotations

from workflow.coordination import contact_input


def problems(role="reporting", name="Jana Petrović", email="berichte@solingen.example.org",
             language="de"):
    return contact_input(role, name, email, language).checked()


def test_a_contact_with_a_role_an_address_and_a_language_is_accepted():
    assert problems() == {}
    assert problems(role="deputy", name="", language="en") == {}


def test_input_is_trimmed_and_a_name_keeps_single_spaces():
    data = contact_input(" head ", "  Dr.   Henrik\tLammersen ", " leitung@solingen.example.org ",
                         "de")
    assert (data.role, data.name, data.email) == ("head", "Dr. Henrik Lammersen",
                                                  "leitung@solingen.example.org")


def test_a_missing_or_malformed_address_is_named_as_such():
    assert problems(email="") == {"email": "Bitte geben Sie eine E-Mail-Adresse an."}
    for bad in ("kein-at-zeichen", "a@b", "zwei@@example.org", "<x>@example.org",
                "a b@example.org", "x@" + "a" * 320 + ".org"):
        assert problems(email=bad) == {"email": "Diese E-Mail-Adresse ist ungültig."}, bad


def test_unknown_roles_languages_and_over_long_names_are_refused():
    assert set(problems(role="chef", language="fr", name="x" * 301)) == {"role", "language",
                                                                        "name"}
