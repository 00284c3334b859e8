"""Mail adapters: the Jinja renderer for templates/email/ and the SMTP and Maildir transports."""
from __future__ import annotations

import base64
import mailbox
import secrets
import smtplib
import ssl
from contextlib import contextmanager
from functools import lru_cache
from datetime import UTC, date, datetime
from email.utils import format_datetime as email_date
from email.utils import formataddr, parseaddr
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2

from infra.settings import SmtpConfig
from workflow.composition import OutgoingMail
from workflow.delivery import PermanentMailError, ServerUnavailable, TransientMailError


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
            autoescape=jinja2.select_autoescape(["html"]), keep_trailing_newline=False,
            auto_reload=False)  # templates change with a release: no stat() per mail
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


CRLF = "\r\n"


def mime_bytes(mail: OutgoingMail) -> bytes:
    """The mail as multipart/alternative (text and HTML, UTF-8, base64), written directly: the
    same MIME that email.mime and its generator produce, at a small part of their cost per mail
    (header folding in the generator dominated sending at 20,000 mails)."""
    boundary = f"=_rc_{secrets.token_hex(12)}"
    headers = [
        ("Subject", encoded_words(mail.subject)),
        ("From", _from_header(mail.sender)),
        ("To", f",{CRLF} ".join(mail.to)),
        *((("Cc", f",{CRLF} ".join(mail.cc)),) if mail.cc else ()),
        ("Date", email_date(datetime.now(UTC))),
        ("Message-ID", mail.message_id),
        ("Auto-Submitted", "auto-generated"),
        ("X-Auto-Response-Suppress", "All"),
        ("Content-Language", mail.language),
        ("X-Reportcycles-Rung", mail.rung),
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
    ]
    parts = [f"{key}: {value}" for key, value in headers]
    for subtype, body in (("plain", mail.text), ("html", mail.html)):
        parts += ["", f"--{boundary}", f'Content-Type: text/{subtype}; charset="utf-8"',
                  "MIME-Version: 1.0", "Content-Transfer-Encoding: base64", "",
                  base64.encodebytes(body.encode("utf-8")).decode("ascii").rstrip("\n")
                  .replace("\n", CRLF)]
    parts += ["", f"--{boundary}--", ""]
    return CRLF.join(parts).encode("ascii")


def encoded_words(value: str) -> str:
    """A header's text as RFC 2047 wants it. Printable ASCII as it is, folded at spaces into
    lines of at most 78 characters; anything else (other characters, control characters, a
    word too long to fold, or text that a reader would take for an encoded-word, ``=?``) as
    UTF-8 base64 encoded-words of 68 characters at most, one per line, never splitting a
    character. (email.header.Header does the same, but weighing quoted-printable against
    base64 character by character took half a millisecond a mail.)"""
    room = 78 - len("Subject: ")
    words = value.split(" ")
    if (value.isascii() and value.isprintable() and "=?" not in value
            and all(len(word) <= room for word in words)):
        lines = [words[0]]
        for word in words[1:]:
            if len(lines[-1]) + 1 + len(word) > room:
                lines.append(word)
            else:
                lines[-1] = f"{lines[-1]} {word}"
        return f"{CRLF} ".join(lines)
    chunks, chunk = [], b""
    for character in value:
        encoded = character.encode("utf-8")
        if len(chunk) + len(encoded) > 42:  # 56 base64 characters: "Subject: " + word < 78
            chunks.append(chunk)
            chunk = b""
        chunk += encoded
    chunks.append(chunk)
    return f"{CRLF} ".join(f"=?utf-8?b?{base64.b64encode(chunk).decode('ascii')}?="
                           for chunk in chunks)


@lru_cache(maxsize=32)
def _from_header(sender: str) -> str:
    name, address = parseaddr(sender)
    return formataddr((name, address), charset="utf-8") if name else address


@lru_cache(maxsize=32)
def _address_of(sender: str) -> str:
    return parseaddr(sender)[1]


def envelope_sender(mail: OutgoingMail) -> str:
    return mail.return_path or _address_of(mail.sender)


class SmtpTransport:
    def __init__(self, config: SmtpConfig):
        self.config = config

    @contextmanager
    def connect(self):
        """Any failure before the first mail means the server is away: no mail is to blame."""
        client = self._open()
        try:
            yield _SmtpConnection(client)
        finally:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()

    def _open(self) -> smtplib.SMTP:
        cfg, client = self.config, None
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
            client.ehlo_or_helo_if_needed()
            return client
        except (OSError, smtplib.SMTPException) as exc:
            if client is not None:
                client.close()
            if isinstance(exc, smtplib.SMTPAuthenticationError):
                raise ServerUnavailable(
                    f"login refused: {exc.smtp_code} {_text(exc.smtp_error)}") from exc
            if isinstance(exc, smtplib.SMTPResponseException):
                raise ServerUnavailable(f"{exc.smtp_code} {_text(exc.smtp_error)}",
                                        exc.smtp_code) from exc
            raise ServerUnavailable(f"no connection to {cfg.host}:{cfg.port}: {exc}") from exc


class _SmtpConnection:
    def __init__(self, client: smtplib.SMTP):
        self.client = client
        self.pipelining = bool(client.does_esmtp and client.has_extn("pipelining"))

    def send(self, mail: OutgoingMail) -> dict[str, str]:
        sender, recipients = envelope_sender(mail), [*mail.to, *mail.cc]
        try:
            if self.pipelining and sender.isascii() and all(r.isascii() for r in recipients):
                refused = send_pipelined(self.client, sender, recipients, mime_bytes(mail))
            else:
                refused = self.client.sendmail(sender, recipients, mime_bytes(mail))
        except smtplib.SMTPRecipientsRefused as exc:
            replies = {address: f"{code} {_text(text)}"
                       for address, (code, text) in exc.recipients.items()}
            codes = [code for code, _ in exc.recipients.values()]
            if any(code == 421 for code in codes):
                raise ServerUnavailable(f"server closing: {replies}", 421) from exc
            if all(500 <= code < 600 for code in codes):
                raise PermanentMailError(f"all recipients refused: {replies}", replies) from exc
            raise TransientMailError(f"recipients refused for now: {replies}",
                                     max(codes)) from exc
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code == 421:
                raise ServerUnavailable(f"421 {_text(exc.smtp_error)}", 421) from exc
            if 500 <= exc.smtp_code < 600:
                raise PermanentMailError(f"{exc.smtp_code} {_text(exc.smtp_error)}") from exc
            raise TransientMailError(f"{exc.smtp_code} {_text(exc.smtp_error)}",
                                     exc.smtp_code) from exc
        except (OSError, smtplib.SMTPException) as exc:
            # Dropped mid-mail (perhaps after the final dot): this mail is tried again.
            raise TransientMailError(f"connection lost: {exc}") from exc
        return {address: f"{code} {_text(text)}" for address, (code, text) in refused.items()}


def send_pipelined(client: smtplib.SMTP, sender: str, recipients: list[str],
                   message: bytes) -> dict[str, tuple[int, bytes]]:
    """smtplib's ``sendmail`` for a server that offers PIPELINING (RFC 2920): MAIL, every RCPT
    and DATA go out in one write and the message in a second, two round trips instead of three
    or more. Returns the recipients refused while others took the mail, and raises what
    ``sendmail`` raises; a 421 at any step closes the connection."""
    size = f" SIZE={len(message)}" if client.has_extn("size") else ""  # as sendmail declares it
    commands = [f"MAIL FROM:{smtplib.quoteaddr(sender)}{size}",
                *(f"RCPT TO:{smtplib.quoteaddr(address)}" for address in recipients), "DATA"]
    client.send(CRLF.join(commands) + CRLF)
    mail_reply = _reply(client)
    refused = {}
    for address in recipients:
        code, text = _reply(client)
        if code not in (250, 251):
            refused[address] = (code, text)
    data_code, data_text = _reply(client)
    accepted = mail_reply[0] == 250 and len(refused) < len(recipients)
    if data_code == 354:
        if accepted:
            client.send((b"." if message.startswith(b".") else b"")
                        + message.replace(b"\r\n.", b"\r\n..") + b".\r\n")
            code, text = _reply(client)
            if code == 250:
                return refused
            _reset(client)
            raise smtplib.SMTPDataError(code, text)
        client.send(b".\r\n")  # the server took DATA though nobody is left to receive it
        _reply(client)
    _reset(client)
    if mail_reply[0] != 250:
        raise smtplib.SMTPSenderRefused(*mail_reply, sender)
    if not accepted:
        raise smtplib.SMTPRecipientsRefused(refused)
    raise smtplib.SMTPDataError(data_code, data_text)


def _reply(client: smtplib.SMTP) -> tuple[int, bytes]:
    code, text = client.getreply()
    if code == 421:  # the server is closing the connection
        client.close()
        raise smtplib.SMTPResponseException(code, text)
    return code, text


def _reset(client: smtplib.SMTP):
    try:
        client.rset()
    except smtplib.SMTPServerDisconnected:
        pass


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


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

    def send(self, mail: OutgoingMail) -> dict[str, str]:
        self.box.add(mime_bytes(mail))
        return {}


class UnconfiguredTransport:
    """No SMTP setting: nothing can leave, and the ledger keeps every mail for later."""

    @contextmanager
    def connect(self):
        raise ServerUnavailable("SMTP_URL is not set: no mail can leave")
        yield  # pragma: no cover


def transport_for(config: SmtpConfig | None):
    if config is None:
        return UnconfiguredTransport()
    if config.scheme == "maildir":
        return MaildirTransport(Path(config.path))
    return SmtpTransport(config)
