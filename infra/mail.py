"""Mail adapters: the Jinja renderer for templates/email/ and the SMTP and Maildir transports."""
from __future__ import annotations

import mailbox
import smtplib
import ssl
from contextlib import contextmanager
from datetime import date, datetime
from email.message import Message
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2

from infra.settings import SmtpConfig
from workflow.sending import PermanentMailError, TransientMailError


def email_templates_dir() -> Path:
    """`templates/email/` of the checkout, or its copy inside an installed wheel."""
    here = Path(__file__).resolve().parent
    installed = here / "email_templates"
    return installed if installed.is_dir() else here.parent / "templates" / "email"


MONTHS_EN = ["January", "February", "March", "April", "May", "June", "July", "August",
             "September", "October", "November", "December"]


class EmailRenderer:
    """Turns (name, language, context) into subject, text and HTML."""

    def __init__(self, directory: Path | None = None, timezone: str = "Europe/Berlin"):
        directory = directory or email_templates_dir()
        self.zone = ZoneInfo(timezone)
        self.environments = {
            language: self._environment(directory, language) for language in ("de", "en")}

    def _environment(self, directory: Path, language: str) -> jinja2.Environment:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(directory)), trim_blocks=True, lstrip_blocks=True,
            autoescape=jinja2.select_autoescape(["html"]), keep_trailing_newline=False)
        env.filters["fdate"] = lambda d: format_date(d, language)
        env.filters["fdatetime"] = lambda d: format_datetime(d.astimezone(self.zone), language)
        return env

    def __call__(self, name: str, language: str, context: dict) -> tuple[str, str, str]:
        language = language if language in self.environments else "de"
        env = self.environments[language]
        context = {**context, "language": language}

        def render(part):
            return env.get_template(f"{name}/{language}/{part}").render(context)

        subject = " ".join(render("subject.txt").split())
        return subject, render("body.txt").strip() + "\n", render("body.html")


def format_date(value: date, language: str) -> str:
    if language == "en":
        return f"{value.day} {MONTHS_EN[value.month - 1]} {value.year}"
    return value.strftime("%d.%m.%Y")


def format_datetime(value: datetime, language: str) -> str:
    if language == "en":
        return f"{format_date(value, 'en')}, {value:%H:%M}"
    return f"{value:%d.%m.%Y, %H:%M} Uhr"


class SmtpTransport:
    def __init__(self, config: SmtpConfig):
        self.config = config

    @contextmanager
    def connect(self):
        cfg = self.config
        try:
            if cfg.scheme == "smtps":
                client = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout,
                                          context=ssl.create_default_context(cafile=cfg.ca_file))
            else:
                client = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
                if cfg.starttls:
                    client.starttls(context=ssl.create_default_context(cafile=cfg.ca_file))
            if cfg.user:
                client.login(cfg.user, cfg.password or "")
        except smtplib.SMTPResponseException as exc:
            raise _classify(exc.smtp_code, exc.smtp_error) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientMailError(f"SMTP connection failed: {exc}") from exc
        try:
            yield _SmtpConnection(client)
        finally:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()


class _SmtpConnection:
    def __init__(self, client: smtplib.SMTP):
        self.client = client

    def send(self, message: Message) -> None:
        try:
            refused = self.client.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if all(500 <= code < 600 for code in codes):
                raise PermanentMailError(f"all recipients refused: {exc.recipients}") from exc
            raise TransientMailError(f"recipients refused: {exc.recipients}") from exc
        except smtplib.SMTPResponseException as exc:
            raise _classify(exc.smtp_code, exc.smtp_error) from exc
        except smtplib.SMTPServerDisconnected as exc:
            raise TransientMailError(f"SMTP server disconnected: {exc}") from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientMailError(str(exc)) from exc
        if refused:
            # Some recipients were accepted: the mail is out; the refusals are logged by the caller.
            return


def _classify(code: int, text) -> Exception:
    detail = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    if 500 <= code < 600:
        return PermanentMailError(f"{code} {detail}")
    return TransientMailError(f"{code} {detail}")


class MaildirTransport:
    """The embedded default: mails land in a local Maildir, shown at /mailbox."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @contextmanager
    def connect(self):
        yield _MaildirConnection(open_maildir(self.path))


def open_maildir(path: Path) -> mailbox.Maildir:
    for sub in ("tmp", "new", "cur"):
        (Path(path) / sub).mkdir(parents=True, exist_ok=True)
    return mailbox.Maildir(path, factory=None, create=False)


class _MaildirConnection:
    def __init__(self, box: mailbox.Maildir):
        self.box = box

    def send(self, message: Message) -> None:
        self.box.add(message)


class UnconfiguredTransport:
    """No SMTP setting: nothing can leave, and the ledger keeps every mail for later."""

    @contextmanager
    def connect(self):
        raise TransientMailError("SMTP_URL is not set: no mail can leave")
        yield  # pragma: no cover


def transport_for(config: SmtpConfig | None):
    if config is None:
        return UnconfiguredTransport()
    if config.scheme == "maildir":
        return MaildirTransport(Path(config.path))
    return SmtpTransport(config)
