"""Personal links kept out of every text that is stored or shown: logs, the copy of a sent mail."""
from __future__ import annotations

import re

# A personal link's path: /r/<token>/… in a path or URL (the token opens the partner's report).
PERSONAL_LINK = re.compile(r"/r/[A-Za-z0-9_-]{8,}")


def blank_personal_links(text: str, replacement: str = "/r/…") -> str:
    """``text`` with the token of every personal link replaced (the rest of the link is kept)."""
    return PERSONAL_LINK.sub(replacement, text) if "/r/" in text else text
