"""One settings object, read from the environment; defaults need no server at all."""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class SmtpConfig:
    """Where mails go: an SMTP server, or (embedded default) a local Maildir."""

    scheme: str  # "smtp", "smtps" or "maildir"
    host: str = "127.0.0.1"
    port: int = 25
    user: str | None = None
    password: str | None = None
    starttls: bool = False
    path: str | None = None  # maildir only
    timeout: float = 30.0

    @classmethod
    def from_url(cls, url: str) -> "SmtpConfig":
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if parts.scheme == "maildir":
            return cls("maildir", path=unquote(parts.path))
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError(f"SMTP_URL must start with smtp://, smtps:// or maildir://, not {url!r}")
        return cls(
            parts.scheme,
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (465 if parts.scheme == "smtps" else 25),
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            starttls=query.get("starttls", "0").lower() in ("1", "true", "yes"),
            timeout=float(query.get("timeout", 30)),
        )


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    instance_dir: Path
    database_url: str
    broker_url: str
    smtp: SmtpConfig
    base_url: str
    timezone: str
    secret_key: str
    mail_from: str
    coordinator_emails: tuple[str, ...]
    sweep_interval_seconds: int
    relay_interval_seconds: int
    send_lease_seconds: int
    send_batch_size: int
    max_send_attempts: int
    embedded: bool = field(default=False)

    @property
    def maildir(self) -> Path | None:
        return Path(self.smtp.path) if self.smtp.scheme == "maildir" else None

    @classmethod
    def from_env(cls) -> "Settings":
        instance = Path(_env("REPORTCYCLES_INSTANCE", str(PROJECT_ROOT / "instance"))).resolve()
        broker = _env("CELERY_BROKER_URL", "memory://")
        smtp_url = os.environ.get("SMTP_URL")
        if not smtp_url and os.environ.get("SMTP_HOST"):
            user = os.environ.get("SMTP_USER")
            auth = f"{user}:{os.environ.get('SMTP_PASSWORD', '')}@" if user else ""
            smtp_url = (f"smtp://{auth}{os.environ['SMTP_HOST']}:{_env('SMTP_PORT', '25')}"
                        f"?starttls={_env('SMTP_STARTTLS', '0')}")
        smtp_url = smtp_url or f"maildir://{instance / 'mailbox'}"
        return cls(
            instance_dir=instance,
            database_url=_env("DATABASE_URL", f"sqlite:///{instance / 'reportcycles.sqlite'}"),
            broker_url=broker,
            smtp=SmtpConfig.from_url(smtp_url),
            base_url=_env("BASE_URL", "http://127.0.0.1:8000").rstrip("/"),
            timezone=_env("TIMEZONE", "Europe/Berlin"),
            secret_key=_env("SECRET_KEY", "") or _instance_secret(instance),
            mail_from=_env("MAIL_FROM", "Erfolgsfaktor Interkulturelle Öffnung <berichte@example.org>"),
            coordinator_emails=tuple(
                e.strip() for e in _env("COORDINATOR_EMAILS", "koordination@example.org").split(",")
                if e.strip()),
            sweep_interval_seconds=int(_env("SWEEP_INTERVAL_SECONDS", "300")),
            relay_interval_seconds=int(_env("RELAY_INTERVAL_SECONDS", "60")),
            send_lease_seconds=int(_env("SEND_LEASE_SECONDS", "600")),
            send_batch_size=int(_env("SEND_BATCH_SIZE", "50")),
            max_send_attempts=int(_env("MAX_SEND_ATTEMPTS", "8")),
            embedded=broker.startswith("memory://"),
        )


def _instance_secret(instance: Path) -> str:
    """A per-installation secret kept in the instance folder, so `make run` needs no setup."""
    path = instance / "secret_key"
    if path.exists():
        return path.read_text().strip()
    instance.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key)
    path.chmod(0o600)
    return key
