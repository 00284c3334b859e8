"""An email address as this service accepts it: one rule for the partners' contacts, the
programme's coordinators and the sign-in accounts.

A dot-atom local part of ASCII letters, digits and the usual marks (no quotes, brackets,
parentheses, commas or percent signs, which only mislead in a header or a link; no umlauts, as
mail leaves without SMTPUTF8) and a domain of ASCII labels (an internationalised domain is
written in its xn-- form), within SMTP's lengths."""
from __future__ import annotations

import re

_ATOM = r"[A-Za-z0-9_!#$&*+/=?^{|}~-]+"  # ASCII: mail leaves without SMTPUTF8
ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                     r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")
MAX_LOCAL, MAX_ADDRESS = 64, 254  # RFC 5321: local part, and the whole path without brackets


def is_address(text: str) -> bool:
    local = text.rpartition("@")[0]
    return len(text) <= MAX_ADDRESS and len(local) <= MAX_LOCAL \
        and ADDRESS.fullmatch(text) is not None
