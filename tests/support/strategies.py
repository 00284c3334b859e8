"""Hypothesis strategies for the property tests: partner CSV files (valid, broken and in between),
answers for every kind of report question, and argument lists for every command of the CLI.

Every strategy builds what a person could really type, paste or upload – Excel's encodings and
delimiters, German number notation, unicode digits, markup, control characters, huge fields –
next to values that are almost right.
"""
from __future__ import annotations

import argparse
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from workflow.models import PARTNER_KIND_LABELS, PartnerKind

REPO = Path(__file__).resolve().parents[2]
TEMPLATE_FILE = REPO / "reportcycles" / "data" / "report_templates" / "nrw-vielfalt-2027.json"


def property_settings(max_examples: int, *, fixtures: bool = False, **overrides) -> settings:
    """Reproducible in CI: derandomized, no example database written into the working tree, no
    deadline (a database or a web request has no fixed speed). ``fixtures``: the test uses a
    function-scoped fixture that every example resets or shares on purpose."""
    checks = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]
    if fixtures:
        checks.append(HealthCheck.function_scoped_fixture)
    scale = float(os.environ.get("PROPERTY_EXAMPLES_SCALE", "1"))  # deeper searches by hand
    return settings(max_examples=max(1, round(max_examples * scale)), derandomize=True,
                    database=None, deadline=None, print_blob=False,
                    suppress_health_check=checks, **overrides)


@contextmanager
def environment(**values):
    """The settings' environment for one example: these values set, every other setting unset
    (None: unset too)."""
    keys = ("DATABASE_URL", "INSTANCE_PATH", "CELERY_BROKER_URL", "SMTP_URL", "SMTP_HOST",
            "COORDINATOR_EMAILS", "SECRET_KEY", "BOUNCE_MAILDIR", "BOUNCE_ADDRESS", "BASE_URL",
            "TIMEZONE")
    with mock.patch.dict(os.environ):
        for key in keys:
            os.environ.pop(key, None)
        for key, value in values.items():
            if value is not None:
                os.environ[key] = str(value)
        yield


# Text --------------------------------------------------------------------------------------------

# What makes CSV, HTML, SQL and argument parsers stumble, and what Excel users really type.
TRICKY_CHARS = (',;\t"\'\n\r \\%_<>&=-+#/:@.'
                "äöüÄÖÜßẞİıçşğ€§°µ½²—–„“”‚‘’…\u00a0\u202f\u200b\u200e\ufeff\x00\x1c\x1e\x85\u2028"
                "٠١٢٣४५𝟘𝟙😀🏳️‍🌈ǅ")
tricky_text = st.one_of(
    st.text(alphabet=st.sampled_from(TRICKY_CHARS), max_size=12),
    st.text(max_size=12),
    st.text(alphabet=st.sampled_from(TRICKY_CHARS + "abcXYZ0123456789"), max_size=30),
)


def huge(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    """A long value built cheaply: one character repeated (e.g. beyond csv's field limit)."""
    return st.builds(lambda char, n: char * n, st.sampled_from("x9ä\",;\n "),
                     st.integers(min_size, max_size))


def stripped(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Values as the reader leaves them and a database can store them: no white space around,
    never empty, no NUL (refused by the import: tested with the junk strategies)."""
    return st.builds(lambda head, rest: (head + rest.replace("\x00", "")).strip(),
                     st.sampled_from("AaZz09Ää€\"'.,;@-_(ǅ"), strategy)


# Partner CSV -------------------------------------------------------------------------------------

REQUIRED_COLUMNS = ("name", "kind", "contact_name", "contact_email", "deputy_email", "head_name",
                    "head_email", "language", "joined_on")
OPTIONAL_COLUMNS = ("employees", "group")
LINE_ENDINGS = ("\n", "\r\n", "\r")
DELIMITERS = (",", ";", "\t")

# A dot-atom (workflow/addresses.py): atoms of letters, digits and marks, joined by single dots.
LOCAL_PART = st.lists(st.text(alphabet=st.sampled_from(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$&*+-/=?^_{|}~"),
    min_size=1, max_size=8), min_size=1, max_size=3).map(".".join)
DOMAIN_LABEL = st.builds(
    lambda head, middle: head + (f"{middle}{head}" if middle else ""),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1,
            max_size=6), st.sampled_from(["", "", "-", "x-y", "--"]))
emails = st.builds(lambda local, labels, tld: f"{local}@{'.'.join(labels)}.{tld}",
                   LOCAL_PART, st.lists(DOMAIN_LABEL, min_size=1, max_size=3),
                   st.sampled_from(["de", "org", "example", "NRW", "xn--80ak6aa92e"]))
names = stripped(st.one_of(
    st.text(alphabet=st.sampled_from(TRICKY_CHARS + "Stadt Kreis e.V. "), min_size=1,
            max_size=40),
    st.text(min_size=1, max_size=40),
    st.sampled_from(["Stadt Köln", 'Verein "Vielfalt" e.V.', "Kreis Soest; Integration",
                     "Straße 1", "STRASSE 2", "=SUMME(A1)", "ǅemal", "Ärztekammer\nNordrhein"])))


def kind_spellings(kind: PartnerKind) -> list[str]:
    label = PARTNER_KIND_LABELS[kind]
    return sorted({kind.value, label, label.upper(), label.lower(), f" {label} "})


@dataclass(frozen=True)
class PartnerSpec:
    """One valid CSV line and what the import must make of it."""

    name: str
    kind: PartnerKind
    kind_text: str
    contact_name: str
    contact_email: str
    deputy_email: str
    head_name: str
    head_email: str
    language: str  # as stored: de or en
    language_text: str  # as written in the file
    joined_on: date | None
    employees: int | None
    employees_text: str
    group: str = ""

    def cells(self) -> dict[str, str]:
        return {"name": self.name, "kind": self.kind_text, "contact_name": self.contact_name,
                "contact_email": self.contact_email, "deputy_email": self.deputy_email,
                "head_name": self.head_name, "head_email": self.head_email,
                "language": self.language_text,
                "joined_on": self.joined_on.isoformat() if self.joined_on else "",
                "employees": self.employees_text, "group": self.group}

    def expected_contacts(self) -> set[tuple[str, str, str, str]]:
        """(role, e-mail, name, language) of every contact row the line must produce."""
        wanted = {("reporting", self.contact_email, self.contact_name, self.language)}
        if self.deputy_email:
            wanted.add(("deputy", self.deputy_email, "", self.language))
        if self.head_email:
            wanted.add(("head", self.head_email, self.head_name, self.language))
        return wanted


def _employees_text(n: int | None) -> st.SearchStrategy[str]:
    if n is None:
        return st.just("")
    return st.sampled_from([str(n), f"{n:,}".replace(",", "."), f"{n:,}".replace(",", " "),
                            f" {n} "])


@st.composite
def partner_specs(draw, name=None) -> PartnerSpec:
    kind = draw(st.sampled_from(list(PartnerKind)))
    language = draw(st.sampled_from(["de", "en"]))
    language_text = draw(st.sampled_from(
        [language, language.upper(), language.title()] + ([""] if language == "de" else [])))
    employees = draw(st.none() | st.integers(0, 2_000_000))
    head_email = draw(st.just("") | emails)
    return PartnerSpec(
        name=name if name is not None else draw(names),
        kind=kind, kind_text=draw(st.sampled_from(kind_spellings(kind))),
        contact_name=draw(stripped(tricky_text) | st.just("")),
        contact_email=draw(emails), deputy_email=draw(st.just("") | emails),
        head_name=draw(stripped(tricky_text) | st.just("")) if head_email else "",
        head_email=head_email, language=language, language_text=language_text,
        joined_on=draw(st.none() | st.dates(date(1950, 1, 1), date(2100, 12, 31))),
        employees=employees, employees_text=draw(_employees_text(employees)))


@st.composite
def partner_sets(draw, min_size: int = 1, max_size: int = 8) -> list[PartnerSpec]:
    """Valid partners with distinct names (as the import compares them: casefolded) and groups
    one level deep: a group partner's members have no members of their own."""
    all_names = draw(st.lists(names, min_size=min_size, max_size=max_size,
                              unique_by=str.casefold))
    specs = [draw(partner_specs(name=n)) for n in all_names]
    groups = draw(st.sets(st.sampled_from(range(len(specs))), max_size=2)) \
        if len(specs) > 1 else set()
    result = []
    for index, spec in enumerate(specs):
        if groups and index not in groups and draw(st.booleans()):
            group = specs[draw(st.sampled_from(sorted(groups)))].name
            spec = PartnerSpec(**{**spec.__dict__, "group": group})
        result.append(spec)
    return result


def csv_field(value: str, delimiter: str, quote_all: bool = False) -> str:
    """A cell as Excel writes it: quoted when it holds the delimiter, a quote or a line break."""
    if quote_all or any(c in value for c in (delimiter, '"', "\r", "\n")):
        return '"' + value.replace('"', '""') + '"'
    return value


@dataclass(frozen=True)
class CsvLayout:
    """How a file is written: columns (any order, any case), delimiter, line ending, BOM."""

    columns: tuple[str, ...]
    header: tuple[str, ...]  # the columns as written in line 1
    delimiter: str = ","
    line_ending: str = "\n"
    quote_all: bool = False
    bom: bool = False
    final_newline: bool = True

    def line(self, cells: dict[str, str]) -> str:
        return self.delimiter.join(csv_field(cells.get(c, ""), self.delimiter, self.quote_all)
                                   for c in self.columns)

    def header_line(self) -> str:
        return self.delimiter.join(csv_field(h, self.delimiter, self.quote_all)
                                   for h in self.header)

    def text(self, lines: list[str]) -> str:
        body = self.line_ending.join([self.header_line(), *lines])
        return ("\ufeff" if self.bom else "") + body + (self.line_ending if self.final_newline
                                                         else "")


@st.composite
def csv_layouts(draw, *, optional=("employees", "group"), extra: bool = True) -> CsvLayout:
    wanted = list(REQUIRED_COLUMNS) + [c for c in OPTIONAL_COLUMNS if c in optional]
    columns = draw(st.permutations(wanted))
    if extra and draw(st.booleans()):
        columns = [*columns, draw(st.sampled_from(["bemerkung", "Notes", "ID"]))]
    header = tuple(draw(st.sampled_from([c, c.upper(), c.title(), f" {c} "])) for c in columns)
    return CsvLayout(tuple(columns), header, delimiter=draw(st.sampled_from(DELIMITERS)),
                     line_ending=draw(st.sampled_from(LINE_ENDINGS)),
                     quote_all=draw(st.booleans()), bom=draw(st.booleans()),
                     final_newline=draw(st.booleans()))


def spec_text(layout: CsvLayout, specs: list[PartnerSpec]) -> str:
    return layout.text([layout.line({k.strip().lower(): v for k, v in s.cells().items()})
                        for s in specs])


@st.composite
def valid_partner_files(draw, max_size: int = 8) -> tuple[str, list[PartnerSpec]]:
    """A CSV text every line of which is valid, and the partners it describes."""
    specs = draw(partner_sets(max_size=max_size))
    optional = ["employees"] if not any(s.group for s in specs) else ["employees", "group"]
    if all(s.employees is None for s in specs) and draw(st.booleans()):
        optional.remove("employees")
    layout = draw(csv_layouts(optional=tuple(optional)))
    return spec_text(layout, specs), specs


@st.composite
def edgy_partner_files(draw) -> str:
    """A valid file with one line the reader accepts but whose values are at the edge of what
    the database holds (huge counts, long names, control characters)."""
    specs = draw(partner_sets(max_size=4))
    specs = [s if not s.group else PartnerSpec(**{**s.__dict__, "group": ""}) for s in specs]
    layout = draw(csv_layouts(optional=("employees",)))
    lines = [layout.line(s.cells()) for s in specs]
    extra = draw(partner_specs().filter(
        lambda e: e.name.casefold() not in {s.name.casefold() for s in specs}))
    lines.insert(draw(st.integers(0, len(lines))), layout.line(draw(_edgy(extra))))
    return layout.text(lines)


def broken_line(delimiter: str) -> st.SearchStrategy[str]:
    """A data line that is wrong in one of the ways real files are."""
    return st.one_of(
        tricky_text,
        st.builds(lambda a, b: f'{a}"{b}', tricky_text, tricky_text),  # a stray quote
        st.builds(lambda a: f'"{a}', tricky_text),  # an unterminated quoted field
        st.builds(lambda n: delimiter * n, st.integers(1, 30)),  # only delimiters
        st.builds(lambda cells: delimiter.join(cells), st.lists(tricky_text, max_size=14)),
        huge(131_000, 140_000).map(lambda v: f"Zu lang{delimiter}{v}"),  # csv's field limit
        huge(131_000, 140_000).map(lambda v: f'"{v}"'),
        st.just(""), st.just("   "), st.just(delimiter * 8),
    )


def _edgy(spec: PartnerSpec) -> st.SearchStrategy[dict[str, str]]:
    """A line the reader accepts with a value at the edge of what the database holds."""
    cells = spec.cells()
    return st.one_of(
        st.integers(2**31 - 2, 10**25).map(lambda n: {**cells, "employees": str(n)}),
        huge(295, 400).map(lambda v: {**cells, "contact_name": "K" + v.strip() + "K"}),
        huge(295, 400).map(lambda v: {**cells, "head_name": "L" + v.strip() + "L",
                                      "head_email": "leitung@example.org"}),
        st.integers(60, 400).map(lambda n: {**cells, "contact_email": "a" * n + "@example.org"}),
        st.sampled_from(["\x00", "\x01", "\x7f", "\ud7ff", "\U0010ffff"]).map(
            lambda c: {**cells, "name": f"N{c}N"}),
        st.just({**cells, "name": "N" * 300}),
        st.just({**cells, "joined_on": "0001-01-01"}),
    )


def _invalidate(spec: PartnerSpec) -> st.SearchStrategy[dict[str, str]]:
    """A line that is certainly refused: one cell made wrong."""
    cells = spec.cells()
    return st.sampled_from([
        {**cells, "kind": "Raumstation"}, {**cells, "contact_email": "kein-at.example.org"},
        {**cells, "name": ""}, {**cells, "language": "fr"}, {**cells, "joined_on": "31.02.2020"},
        {**cells, "employees": "-5"}, {**cells, "employees": "viele"},
        {**cells, "name": "N" * 301}, {**cells, "contact_email": ""},
        {**cells, "head_email": "leitung@"},
    ])


@st.composite
def messy_partner_texts(draw) -> str:
    """A mixture: a header (valid, broken or missing), valid lines, broken lines, empty lines,
    BOM, any delimiter and line ending, huge fields."""
    layout = draw(csv_layouts())
    header = draw(st.one_of(
        st.just(layout.header_line()), st.just(layout.header_line()),
        st.just(layout.header_line().upper()),
        tricky_text, st.just(""), huge(131_000, 140_000),
        st.just(layout.header_line()[: len(layout.header_line()) // 2]),
        st.just('"' + layout.header_line()),
    ))
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["valid", "valid", "edgy", "invalid", "broken"]))
        if kind == "valid":
            spec = draw(partner_specs())
            lines.append(layout.line({**spec.cells(), "group": ""}))
        elif kind == "edgy":
            lines.append(layout.line({**draw(_edgy(draw(partner_specs()))), "group": ""}))
        elif kind == "invalid":
            lines.append(layout.line(draw(_invalidate(draw(partner_specs())))))
        else:
            lines.append(draw(broken_line(layout.delimiter)))
    if draw(st.booleans()):  # a group column naming someone, maybe no one, maybe itself
        lines.append(layout.line({**draw(partner_specs()).cells(), "group": draw(names)}))
    body = layout.line_ending.join([header, *lines])
    return ("\ufeff" if layout.bom else "") + body + (layout.line_ending if layout.final_newline
                                                      else "")


@st.composite
def partner_file_bytes(draw) -> bytes:
    """An uploaded file: CSV text in Excel's encodings, or something that is not text at all."""
    text = draw(messy_partner_texts() | valid_partner_files().map(lambda pair: pair[0]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "cp1252",
                                     "latin-1", "binary", "zip", "truncated"]))
    if encoding == "binary":
        return draw(st.binary(max_size=300))
    if encoding == "zip":
        return b"PK\x03\x04" + draw(st.binary(max_size=50))
    if encoding == "truncated":
        data = text.encode("utf-16")
        return data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    return text.encode(encoding, errors="replace" if encoding in ("cp1252", "latin-1")
                       else "surrogatepass")


# Report form -------------------------------------------------------------------------------------

def load_shipped_template() -> dict:
    return json.loads(TEMPLATE_FILE.read_text(encoding="utf-8"))


def _number_notations(value: Decimal) -> list[str]:
    plain = format(value, "f")
    return [plain, plain.replace(".", ","), f"{value:,}", f"{value:,}".replace(",", " "),
            f"{value:,}".replace(",", "X").replace(".", ",").replace("X", "."),
            f"{value:e}", f"{plain} %", f"+{plain}", f"-{plain}"]


numbers_as_typed = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, min_value=-10**12, max_value=10**12)
    .flatmap(lambda d: st.sampled_from(_number_notations(d))),
    st.integers(-10**30, 10**30).map(str),
    st.sampled_from(["", " ", "0", "-0", "00012", "12,5", "12.5", "1.234", "1.234,56", "1 234",
                     "1\u202f234", "١٢", "１２", "𝟙𝟚", "½", "²", "12e3", "NaN", "Infinity", "-inf",
                     "0x1F", "1_000", "12,", ",5", ".5", "1,2,3", "--1", "9" * 5000, "1e999999",
                     "100,05", "100,0", "99,99", "101", "1000000", "1000001"]),
)
dates_as_typed = st.one_of(
    st.dates().map(lambda d: d.strftime("%d.%m.%Y")), st.dates().map(date.isoformat),
    st.sampled_from(["31.02.2027", "29.02.2028", "00.00.0000", "1.1.1", "2027-13-01",
                     "20270101", "2027-W01-1", "٣١.٠٣.٢٠٢٧", "99.99.9999", "31.12.99999",
                     "0001-01-01", "9999-12-31"]),
)
markup = st.sampled_from(['<script>alert(1)</script>', '"><img src=x onerror=alert(1)>',
                          "{{ 7*7 }}", "{% raw %}", "%(name)s", "{0}", "' OR 1=1 --",
                          "\x00", "\r\n\r\n", "\u202e", "&amp;"])
any_answer = st.one_of(tricky_text, st.text(), markup, numbers_as_typed, dates_as_typed,
                       huge(3990, 4010), huge(20_000, 20_010))


def answer_for(question: dict) -> st.SearchStrategy[str]:
    """What a person might put into this question's field: mostly fitting, sometimes anything."""
    kind = question["type"]
    options = [o["value"] for o in question.get("options", [])]
    if kind in ("number", "percentage", "count"):
        fitting = numbers_as_typed
    elif kind == "date":
        fitting = dates_as_typed
    elif kind == "yes_no":
        fitting = st.sampled_from(["yes", "no", "Yes", "ja", " yes ", ""])
    elif kind == "single_choice":
        fitting = st.sampled_from([*options, "", options[0].upper(), f" {options[0]} "])
    elif kind == "short_text":
        fitting = st.one_of(tricky_text, huge(195, 205))
    elif kind == "long_text":
        fitting = st.one_of(tricky_text, huge(3995, 4005))
    else:
        fitting = any_answer
    return st.one_of(fitting, fitting, any_answer)


def choices_for(question: dict) -> st.SearchStrategy[list[str]]:
    options = [o["value"] for o in question.get("options", [])]
    return st.lists(st.one_of(st.sampled_from(options), st.sampled_from(options),
                              tricky_text, huge(199, 300)), max_size=60)


FILE_MAGIC = [b"", b"%PDF-1.7\n", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"PK\x03\x04",
              b"GIF89a", b"MZ", b"\x00\x00\x00", b"%PDF"]


@st.composite
def uploads(draw) -> tuple[bytes, str, str]:
    """(content, file name, declared content type) of an uploaded file."""
    magic = draw(st.sampled_from(FILE_MAGIC))
    size = draw(st.sampled_from([0, 10, 200, 5 * 1024 * 1024 - 20, 5 * 1024 * 1024 + 1]))
    body = magic + (draw(st.binary(max_size=64)) * (size // 64 + 1))[:size]
    name = draw(st.one_of(st.sampled_from(["bericht.pdf", "../../etc/passwd", "a\x00b.pdf",
                                            "C:\\Users\\x\\Konzept.docx", "", " ", ".pdf",
                                            "ä" * 300 + ".pdf", "\u202egnp.exe"]),
                          tricky_text))
    content_type = draw(st.sampled_from(["application/pdf", "image/png", "text/html",
                                         "application/octet-stream", "", "x/\x7f"]))
    return body, name, content_type


# Command line ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FileArg:
    """A file argument, written into the example's directory just before the command runs."""

    name: str
    content: bytes | None  # None: the path does not exist
    directory: bool = False


class Command:
    """A leaf command of the parser (e.g. ("partners", "import")) and its own arguments."""

    def __init__(self, path: tuple[str, ...], actions: tuple[argparse.Action, ...]):
        self.path, self.actions = path, actions

    def __repr__(self):  # hypothesis prints it with every failing example
        return f"Command({' '.join(self.path)!r})"


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def commands_of(parser: argparse.ArgumentParser, exclude=(), prefix=()) -> list[Command]:
    """Every leaf command of ``parser`` (e.g. ("partners", "import")) with its own arguments."""
    sub = _subparsers(parser)
    if sub is None:
        return [Command(prefix, tuple(
            a for a in parser._actions if not isinstance(a, argparse._HelpAction)))]
    found = []
    for name, child in sub.choices.items():
        if name not in exclude:
            found.extend(commands_of(child, exclude, (*prefix, name)))
    return found


ints_as_typed = st.one_of(
    st.integers(-5, 5).map(str), st.integers(1990, 2110).map(str),
    st.integers(-10**30, 10**30).map(str),
    st.sampled_from(["2027", "2028", "1", "0", "-1", "٢٠٢٧", "２０２７", " 2027 ", "2_027",
                     "2147483648", "9223372036854775808", "1" * 5000, "2027.0", "", "abc"]),
)
EXTREME_DATES = ["0001-01-01", "9999-12-31", "1999-12-31", "2000-01-01", "2100-12-31",
                 "2101-01-01"]
instants_as_typed = st.one_of(
    st.builds(lambda day, offset: f"{day}T00:00{offset}", st.sampled_from(EXTREME_DATES),
              st.sampled_from(["", "+01:00", "-01:00", "Z", "+23:59"])),
    st.sampled_from(["2027-02-01T08:30", "2027-03-19T08:30", "2027-05-15", "2027-03-19T08:30+01:00",
                     "2027-03-28T02:30", "2027-02-30", "0001-01-01", "9999-12-31T23:59:59-23:59",
                     "2027-02-01T08:30Z", "now", "", "٢٠٢٧-٠٢-٠١"]),
    st.datetimes().map(lambda d: d.isoformat()), tricky_text)
dates_iso = st.one_of(st.sampled_from(EXTREME_DATES), st.dates().map(date.isoformat),
                      st.sampled_from(["2027-04-30", "2027-02-01", "2026-12-31", "2027-02-29",
                                       "20270430", "30.04.2027", "", "2027-W17-5"]), tricky_text)
# What a shell can hand over: no NUL, but bytes that are not UTF-8 arrive as surrogate escapes.
shell_bytes = st.binary(min_size=1, max_size=8).map(
    lambda raw: os.fsdecode(raw.replace(b"\x00", b"")) or "x")
text_words = st.one_of(
    st.sampled_from(["Partner 00001", "Partner 0000", "partner", "%", "_", "",
                     "koordination@example.org", "staff_total=Bitte prüfen", "=leer",
                     "staff_total", "-x", "--year", "Stadt Solingen"]),
    tricky_text)
words = st.one_of(shell_bytes, text_words)  # on a command line
emails_as_typed = st.one_of(emails, st.sampled_from(["koordination@example.org", "x", "",
                                                     "a@b", "Name <a@example.org>",
                                                     "a@example.org,b@example.org"]),
                            tricky_text)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=False)
    | tricky_text | st.sampled_from(["08:00", "25:00", "Europe/Berlin", "Mars/Olympus", "02-30",
                                     "reminder", "coordinators", "head"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(tricky_text, inner, max_size=4),
    max_leaves=8)


@st.composite
def mutated(draw, base) -> object:
    """``base`` with a few of its values replaced, keys removed or added (JSON-like data)."""
    value = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(0, 3))):
        node, steps = value, draw(st.integers(0, 5))
        for _ in range(steps):
            children = (list(node.values()) if isinstance(node, dict) else node
                        if isinstance(node, list) else [])
            containers = [c for c in children if isinstance(c, (dict, list)) and c]
            if not containers:
                break
            node = draw(st.sampled_from(containers))
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node)))
            action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
            if action == "replace":
                node[key] = draw(JSON_VALUES)
            elif action == "delete":
                del node[key]
            else:
                node[draw(tricky_text)] = draw(JSON_VALUES)
        elif isinstance(node, list) and node:
            node[draw(st.integers(0, len(node) - 1))] = draw(JSON_VALUES)
    if draw(st.integers(0, 9)) == 0:
        value = draw(JSON_VALUES)
    return value


def toml_text(data) -> str:
    """A TOML rendering good enough for the policy (scalars, arrays, arrays of tables)."""
    if not isinstance(data, dict):
        return json.dumps(data)
    lines, tables = [], []
    for key, value in data.items():
        name = json.dumps(str(key))
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables.extend((name, item) for item in value)
        elif value is None:
            continue
        else:
            lines.append(f"{name} = {json.dumps(value)}")
    for name, item in tables:
        lines.append(f"[[{name}]]")
        lines.extend(f"{json.dumps(str(k))} = {json.dumps(v)}" for k, v in item.items()
                     if v is not None)
    return "\n".join(lines) + "\n"


def _default_policy() -> dict:
    from workflow.policy import ReportingPolicy
    return ReportingPolicy().to_dict()


file_names = st.one_of(st.sampled_from(["partners.csv", "policy.toml", "policy.json",
                                        "vorlage.json", "x", "nrw-vielfalt-2027", "-", ".",
                                        "n" * 300, "ü.csv"]),
                       stripped(tricky_text).map(lambda n: n.replace("/", "_")))


FILE_KINDS = ("csv", "template", "policy_json", "policy_toml", "binary", "missing", "directory",
              "bundled")


@st.composite
def file_args(draw, likely: str | None = None) -> FileArg | str:
    """A path on the command line: a file with CSV, JSON or TOML in it (right, broken or
    binary), a directory, a missing file, or a bundled template's name. ``likely``: the kind
    the command expects, drawn half of the time."""
    kinds = FILE_KINDS if likely is None else (likely,) * len(FILE_KINDS) + FILE_KINDS
    kind = draw(st.sampled_from(kinds))
    name = draw(file_names)
    if kind == "bundled":
        return draw(st.sampled_from(["nrw-vielfalt-2027", "nrw-vielfalt-2026", "../data"]))
    if kind == "missing":
        return FileArg(name, None)
    if kind == "directory":
        return FileArg(name, b"", directory=True)
    if kind == "csv":
        return FileArg(name, draw(partner_file_bytes()))
    if kind == "template":
        data = draw(mutated(load_shipped_template()))
        return FileArg(name if name.endswith(".json") else name + ".json",
                       json.dumps(data, ensure_ascii=draw(st.booleans())).encode())
    if kind == "policy_json":
        return FileArg(name if name.endswith(".json") else name + ".json",
                       json.dumps(draw(mutated(_default_policy()))).encode())
    if kind == "policy_toml":
        return FileArg(name if not name.endswith(".json") else name + ".toml",
                       toml_text(draw(mutated(_default_policy()))).encode())
    return FileArg(name, draw(st.binary(max_size=200)))


# Values that get past argparse and reach the use case (the seeded database's partners, years,
# request ids), drawn about half of the time; the rest is anything.
FITTING = {
    "year": st.sampled_from(["2027", "2028", "2026"]),
    "request_id": st.sampled_from(["1", "2"]),
    "ids": st.sampled_from(["1", "2", "3"]),
    "partner": st.sampled_from(["Partner 00001", "Partner 00002", "Stadt Solingen",
                                "Kooperation Ruhr", "Stadt", "partner", "Stadt \udcc3"]),
    "field": st.sampled_from(["staff_total=Bitte prüfen", "plans_next_year=Mehr dazu",
                              "unbekannt=x", "_general=Allgemein", "staff_total="]),
    "at": st.datetimes(datetime(2027, 1, 1), datetime(2027, 12, 31)).map(
        lambda d: d.isoformat(timespec="minutes")),
    "date": st.one_of(st.dates(date(2027, 1, 1), date(2027, 12, 31)).map(date.isoformat),
                      st.sampled_from(EXTREME_DATES)),
}
LIKELY_FILE = {"partners": "csv", "policy": "policy_json", "templates": "template"}


def _value_for(action: argparse.Action, command: tuple[str, ...] = ()) -> st.SearchStrategy:
    name = (action.dest or "").lower()
    fitting = FITTING.get(name)
    if getattr(action.type, "__name__", "") == "_parse_date":
        fitting = FITTING["date"]
    junk = _junk_for(action, command)
    return junk if fitting is None else st.one_of(fitting, junk)


def _junk_for(action: argparse.Action, command: tuple[str, ...]) -> st.SearchStrategy:
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        return st.one_of(st.sampled_from(sorted(action.choices)), words)
    if action.type is int:
        return ints_as_typed
    if action.type is Path:
        return file_args(LIKELY_FILE.get(command[0]) if command else None)
    if getattr(action.type, "__name__", "") == "_parse_date":
        return dates_iso
    name = (action.dest or "").lower()
    if name == "at":
        return instants_as_typed
    if "email" in name:
        return emails_as_typed
    return words


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


@st.composite
def argument_lists(draw, commands: list[Command]) -> list:
    """An argument list for one command: its options in any order, each present or not, with
    fitting or unfitting values; sometimes a stray token, a missing value or a typo."""
    command = draw(st.sampled_from(commands))
    argv: list = []
    if draw(st.integers(0, 4)) == 0:
        argv.append("-v")
    argv.extend(command.path)
    parts: list[list] = []
    for action in command.actions:
        if action.option_strings:
            if draw(st.integers(0, 3)) == 0 and not action.required:
                continue
            if action.required and draw(st.integers(0, 9)) == 0:
                continue  # a required option left out
            flag = draw(st.sampled_from(action.option_strings))
            if not _takes_value(action):
                parts.append([flag])
                continue
            count = 1 if action.nargs is None else draw(st.integers(0, 3))
            values = [draw(_value_for(action, command.path)) for _ in range(count)]
            if action.default == [] or action.nargs in ("+", "*"):  # append or lists: repeat
                parts.extend([flag, v] for v in values)
            else:
                parts.append([flag, *values])
        else:
            if action.nargs in ("+", "*"):
                count = draw(st.integers(0, 4))  # none at all: argparse's message for "+"
            else:
                count = 1 if draw(st.integers(0, 9)) else 0  # now and then one is missing
            parts.append([draw(_value_for(action, command.path)) for _ in range(count)])
    order = draw(st.permutations(range(len(parts))))
    for index in order:
        argv.extend(parts[index])
    if draw(st.integers(0, 5)) == 0:
        argv.insert(draw(st.integers(0, len(argv))), draw(words | file_args()))
    return [arg.replace("\x00", "") if isinstance(arg, str) else arg  # argv has no NUL
            for arg in argv]
