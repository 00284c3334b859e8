"""Logging for every process (CLI, gunicorn, Celery, scheduler): personal links never reach a log.

The redaction sits in the log record factory, so it covers every logger and handler in the
process: Flask's error log, werkzeug's and gunicorn's access and error logs, Celery's task log.
"""
from __future__ import annotations

import logging
import re

from workflow.redaction import blank_personal_links

# Besides a personal link (workflow.redaction), a bare 256-bit token (43 base64url chars).
BARE_TOKEN = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def redact(text: str) -> str:
    text = blank_personal_links(text, "/r/[link]")
    return BARE_TOKEN.sub("[token]", text)


_formatter = logging.Formatter()
_installed_factory = None


def _redacting_factory(previous):
    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is logging's problem to report, not ours
            return record
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(_formatter.formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return record
    return factory


def install_redaction():
    """Idempotent: every log record created in this process from now on is redacted."""
    global _installed_factory
    current = logging.getLogRecordFactory()
    if current is not _installed_factory:
        _installed_factory = _redacting_factory(current)
        logging.setLogRecordFactory(_installed_factory)


def configure_logging(level: int = logging.INFO):
    """Called by every entry point before anything logs."""
    install_redaction()
    logging.basicConfig(level=level, format=FORMAT)
