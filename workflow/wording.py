"""What the domain tells a person, in the language of the page that asked: German (the default,
and the command line's) or English. Each topic keeps its own table beside its rules,
``{key: {"de": "…{value}…", "en": "…{value}…"}}``."""
from __future__ import annotations


def worded(table: dict[str, dict[str, str]], key: str, language: str = "de", /,
           **values) -> str:
    """The text of ``key`` in ``language`` (German when there is none), filled with ``values``."""
    texts = table[key]
    return (texts.get(language) or texts["de"]).format(**values)
