"""Reading what a real SMTP server received."""
from email.utils import getaddresses


def addresses(header: str | None) -> list[str]:
    return [addr for _, addr in getaddresses([header or ""]) if addr]
