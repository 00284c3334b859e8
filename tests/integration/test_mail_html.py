"""The HTML part of every kind of mail, as the real pipeline sends it, passes W3C's Nu HTML checker.

A year is rehearsed on SQLite with a real SMTP server: invitations (a group partner's members
included), reminders, the overdue ladder up to the coordinators' notice, a receipt, a return, an
extension granted and one refused, both kinds of intent, a link resent by a coordinator. The
kinds to cover are the folders of templates/email/, so a new kind of mail cannot escape the
check. Coordinators are always written to in German; for them the context the pipeline composed
is rendered once more in English.
"""
from __future__ import annotations

import re
import time
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from infra.mail import EmailRenderer
from tests.integration.conftest import berlin
from tests.support.nu_checker import nu_check
from tests.support.report import VALID_ANSWERS, load_shipped_template
from workflow.coordination import resend_link
from workflow.cycles import get_programme, open_cycle
from workflow.digest import plan_digests
from workflow.models import Notification, Partner, Submission
from workflow.partners import ensure_programme, import_partners
from workflow.reporting import save_draft, submit_report
from workflow.requests import decide_extension, declare_intent, request_extension
from workflow.review import return_report
from workflow.sweep import sweep

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "email"
OPENS, DUE = date(2027, 2, 1), date(2027, 4, 30)
GROUP = "Städtekooperation Integration.Interkommunal"
LANG = re.compile(r'<html lang="([a-z]+)"')

# One partner per path through the year, in both languages where the partner chooses it.
PARTNERS = f"""\
name,kind,contact_name,contact_email,deputy_email,head_name,head_email,language,joined_on,group
Stadt Ahlen,Kommune,Miriam Hoffmeister,berichte@ahlen.example.org,vertretung@ahlen.example.org,Bürgermeister Dr. Rolf Jansen,leitung@ahlen.example.org,de,2014-05-21,
Caritas & Diakonie Bonn,Verband,Okan Yıldırım,reports@caritas-bonn.example.org,deputy@caritas-bonn.example.org,Director Petra Kuhl,head@caritas-bonn.example.org,en,2015-03-12,
Kreis Soest,Kreis,Aylin Kaya,berichte@kreis-soest.example.org,,Landrätin Renate Kalt,leitung@kreis-soest.example.org,de,2012-11-19,
Jobcenter Köln,Jobcenter,Dariusz Wiśniewski,reports@jobcenter-koeln.example.org,,,,en,2016-01-04,
Polizei Bielefeld,Polizei,Anh Tran,berichte@polizei-bielefeld.example.org,,,,de,2017-09-01,
Handwerkskammer Münster,Verband,Karolina Zielińska,reports@hwk-muenster.example.org,,,,en,2018-02-14,
Kreis Lippe,Kreis,Ebru Koç,berichte@kreis-lippe.example.org,,,,de,2012-11-19,
Uniklinik Aachen,Unternehmen,Vincenzo Greco,reports@uniklinik-aachen.example.org,,,,en,2019-06-30,
{GROUP},Kooperation,Nesrin Aksoy,berichte@integration-interkommunal.example.org,,,,de,2013-07-09,
Stadt Bochum (Städtekooperation),Kommune,Derya Şahin,integration@bochum.example.org,,,,de,2013-07-09,{GROUP}
Stadt Essen (Städtekooperation),Kommune,Alina Krasnova,integration@essen.example.org,,,,en,2013-07-09,{GROUP}
"""

ANSWERS = {**VALID_ANSWERS, "plans_next_year": "Mehrsprachige Stellenanzeigen & Mentoring.\n"
                                                 "Zweite Zeile: <Ausbildung> für alle."}


def expected_kinds() -> dict[str, set[str]]:
    """Every mail kind (a folder with an HTML body) and the languages it is written in."""
    kinds = {}
    for folder in sorted(p for p in TEMPLATES.iterdir() if p.is_dir()):
        languages = {body.parent.name for body in folder.glob("*/body.html")}
        if languages:
            kinds[folder.name] = languages
    return kinds


def at(services, when, use_case, *args, **kwargs):
    """One use case in its own committed transaction, then the sweep at the same instant."""
    with services.database.unit_of_work() as uow:
        result = use_case(uow, *args, now=when, **kwargs)
        uow.commit()
    run_sweep(services, when)
    return result


def run_sweep(services, when):
    with services.database.unit_of_work() as uow:
        sweep(uow, when)
        uow.commit()


def submission_of(services, partner_name: str) -> tuple[int, int]:
    with services.database.unit_of_work() as uow:
        submission = uow.session.scalars(
            select(Submission).join(Partner, Partner.id == Submission.partner_id)
            .where(Partner.name == partner_name)).one()
        return submission.id, submission.version


def submit(uow, submission_id, *, now, version):
    save_draft(uow, submission_id, ANSWERS, expected_version=version, now=now, actor="partner")
    return submit_report(uow, submission_id, expected_version=version + 1, now=now,
                         actor="partner")


def request_extension_id(uow, submission_id, **kwargs) -> int:
    return request_extension(uow, submission_id, **kwargs).id


def rehearse_a_year(services):
    with services.database.unit_of_work() as uow:
        programme = ensure_programme(uow, coordinator_emails=("koordination@example.org",))
        import_partners(uow, programme, PARTNERS)
        load_shipped_template(uow, programme)
        uow.commit()
    with services.database.unit_of_work() as uow:
        open_cycle(uow, get_programme(uow), 2027, now=berlin(OPENS, 7, 0), opens_on=OPENS,
                   due_on=DUE)
        uow.commit()
    run_sweep(services, berlin(OPENS))  # invitations, the members' own included

    for name in ("Kreis Soest", "Jobcenter Köln"):  # receipt, then returned with comments
        sid, version = submission_of(services, name)
        at(services, berlin(date(2027, 3, 1), 9), submit, sid, version=version)
        at(services, berlin(date(2027, 3, 2), 9), return_report, sid, actor="koordination",
           comments={"_general": "Vielen Dank.\nBitte zwei Angaben prüfen & ergänzen.",
                     "trainees_total": "Weicht stark vom Vorjahr ab (< 50 %)."})
    ids = {}
    for name in ("Polizei Bielefeld", "Handwerkskammer Münster"):  # request, then decision
        sid, _ = submission_of(services, name)
        ids[name] = at(services, berlin(date(2027, 3, 3), 9), request_extension_id, sid,
                       actor="partner", proposed_due=date(2027, 6, 30),
                       reason="Personalwechsel im Team.\nDie Zahlen liegen erst im Juni vor.")
    at(services, berlin(date(2027, 3, 4), 9), decide_extension, ids["Polizei Bielefeld"],
       grant=True, actor="koordination", comment="Gern, bis Ende Juni.")
    at(services, berlin(date(2027, 3, 4), 9), decide_extension, ids["Handwerkskammer Münster"],
       grant=False, actor="koordination", comment="Leider nicht möglich.\nBitte melden Sie sich.")
    sid, _ = submission_of(services, "Kreis Lippe")
    at(services, berlin(date(2027, 3, 5), 9), declare_intent, sid, actor="partner",
       intent="cannot_report", reason="Die Stelle ist unbesetzt.")
    for name in ("Stadt Ahlen", "Caritas & Diakonie Bonn"):  # a coordinator resends the link
        sid, _ = submission_of(services, name)
        at(services, berlin(date(2027, 3, 5), 9), resend_link, sid, actor="koordination")
    sid, _ = submission_of(services, "Uniklinik Aachen")
    at(services, berlin(date(2027, 3, 5), 9), declare_intent, sid, actor="partner",
       intent="will_submit_by", until=date(2027, 5, 20), reason="Umzug der Verwaltung.")
    with services.database.unit_of_work() as uow:  # the coordinators' digest of March 5th
        plan_digests(uow, berlin(date(2027, 3, 6), 7, 5))
        uow.commit()
    run_sweep(services, berlin(date(2027, 3, 6), 7, 5))

    # The ladder of those who do nothing: reminders, overdue, the head, the coordinators.
    for day in (date(2027, 3, 19), date(2027, 4, 12), date(2027, 5, 7), date(2027, 5, 18),
                date(2027, 6, 2), date(2027, 6, 16)):
        run_sweep(services, berlin(day))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_html_of_every_mail_kind_passes_the_nu_html_checker(services, smtp, monkeypatch,
                                                                tmp_path):
    _, handler = smtp
    composed = {}  # kind -> the contexts the pipeline composed for it
    render = EmailRenderer.__call__  # the real one, also for rendering again below

    def recording(self, name, language, context):
        composed.setdefault(name, []).append(dict(context))
        return render(self, name, language, context)

    monkeypatch.setattr(EmailRenderer, "__call__", recording)
    started = time.monotonic()
    rehearse_a_year(services)

    with services.database.unit_of_work() as uow:
        kind_of = dict(uow.session.execute(select(Notification.message_id, Notification.email)
                                           .where(Notification.message_id.is_not(None))).all())
    folder = tmp_path / "mails"
    folder.mkdir()
    files, covered = [], set()
    for n, received in enumerate(handler.messages):
        message = received["message"]
        assert message["Message-ID"] in kind_of, f"not in the ledger: {message['Message-ID']}"
        kind, html = kind_of[message["Message-ID"]], message.get_body(("html",)).get_content()
        language = LANG.search(html).group(1)
        path = folder / f"{kind}.{language}.{n:03d}.html"
        path.write_text(html, encoding="utf-8")
        files.append(path)
        covered.add((kind, language))

    expected = expected_kinds()
    never_sent = sorted(set(expected) - {kind for kind, _ in covered})
    assert not never_sent, (f"mail kinds this rehearsal never sent (drive them here so that "
                            f"their HTML is checked): {never_sent}")
    renderer = EmailRenderer(TEMPLATES)
    for kind, languages in expected.items():
        for language in sorted(languages - {lang for k, lang in covered if k == kind}):
            # Only coordinators' mails are sent in one language: the same facts, rendered again.
            assert kind in composed, f"{kind} was sent but not rendered by EmailRenderer"
            for n, context in enumerate(composed[kind]):
                path = folder / f"{kind}.{language}.rendered{n:03d}.html"
                path.write_text(render(renderer, kind, language, context)[2], encoding="utf-8")
                files.append(path)
    rehearsed = time.monotonic()

    messages = nu_check(files)
    checked = time.monotonic()
    others = [m for m in messages if not m.is_mail_table_attribute]
    print(f"{len(files)} HTML parts of {len(expected)} kinds; rehearsal {rehearsed - started:.1f}s,"
          f" Nu checker {checked - rehearsed:.1f}s; {len(messages) - len(others)} table-attribute"
          f" errors allowed; {len(others)} other messages", *others, sep="\n")
    # Errors fail; warnings and info (e.g. language detection) are only shown above.
    problems = [m for m in others if m.type != "info"]
    assert not problems, "the Nu HTML checker found:\n" + "\n".join(map(str, problems))
