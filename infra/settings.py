"""One settings object, read from the environment; defaults need no server at all."""
from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_COORDINATORS = ("koordination@example.org",)
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the setting and what to do."""


def _flag(name: str, value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    raise ConfigError(f"{name} must be 1/0 (or true/false), not {value!r}")


@dataclass(frozen=True)
class SmtpConfig:
    """Where mails go: an SMTP server, or (embedded default) a local Maildir."""

    scheme: str  # "smtp" (plain or STARTTLS), "smtps" (implicit TLS) or "maildir"
    host: str = "127.0.0.1"
    port: int = 25
    user: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    allow_plaintext_auth: bool = False
    path: str | None = None  # maildir only
    timeout: float = 30.0
    ca_file: str | None = None  # a private CA to trust for the server's certificate

    @classmethod
    def from_url(cls, url: str) -> "SmtpConfig":
        """``smtp://user:pass@host:587``; user and password percent-encoded, as in any URL."""
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if parts.scheme == "maildir":
            return cls("maildir", path=unquote(parts.path))
        if parts.scheme not in ("smtp", "smtps"):
            raise ConfigError("SMTP_URL must start with smtp://, smtps:// or maildir:// "
                              f"(got {parts.scheme or 'no scheme'}://…)")
        if parts.fragment or "#" in url:
            raise ConfigError("SMTP_URL contains '#': characters like # @ / in a user name or "
                              "password must be percent-encoded (# as %23, @ as %40), or use "
                              "SMTP_HOST, SMTP_USER and SMTP_PASSWORD instead")
        try:
            port = parts.port
        except ValueError:
            raise ConfigError("SMTP_URL has an invalid port (a password with @, # or / must be "
                              "percent-encoded, or use SMTP_HOST/SMTP_USER/SMTP_PASSWORD)") from None
        return cls.from_parts(
            host=parts.hostname or "", port=port, user=unquote(parts.username or "") or None,
            password=unquote(parts.password or "") or None,
            implicit_tls=parts.scheme == "smtps", starttls=query.get("starttls"),
            allow_plaintext=query.get("allow_plaintext"), timeout=query.get("timeout"),
            ca_file=query.get("ca_file"), name="SMTP_URL")

    @classmethod
    def from_parts(cls, *, host: str, port: int | str | None, user: str | None,
                   password: str | None, implicit_tls: bool = False, starttls: str | None = None,
                   allow_plaintext: str | None = None, timeout: str | None = None,
                   ca_file: str | None = None, name: str = "SMTP_HOST") -> "SmtpConfig":
        """Port 465 means implicit TLS, port 587 STARTTLS; a password never goes out in clear
        text unless explicitly allowed (e.g. a relay on the same host)."""
        if not host:
            raise ConfigError(f"{name}: no host given")
        try:
            port = int(port) if port not in (None, "") else (465 if implicit_tls else 25)
        except ValueError:
            raise ConfigError(f"SMTP_PORT must be a number, not {port!r}") from None
        implicit_tls = implicit_tls or port == 465
        config = cls(
            "smtps" if implicit_tls else "smtp", host=host, port=port, user=user or None,
            password=password or None,
            starttls=not implicit_tls and _flag("SMTP_STARTTLS", starttls, port == 587),
            allow_plaintext_auth=_flag("SMTP_ALLOW_PLAINTEXT", allow_plaintext, False),
            timeout=float(timeout or 30), ca_file=ca_file or os.environ.get("SMTP_CA_FILE") or None)
        if config.user and not config.encrypted and not config.allow_plaintext_auth:
            raise ConfigError(
                f"{name}: refusing to send the SMTP password unencrypted to {host}:{port}. Use "
                "port 587 (STARTTLS), 465 or smtps:// (TLS), SMTP_STARTTLS=1, or allow it "
                "explicitly with SMTP_ALLOW_PLAINTEXT=1 (only for a relay on a trusted network).")
        return config

    @property
    def encrypted(self) -> bool:
        return self.scheme == "smtps" or self.starttls

    def describe(self) -> str:
        """For the console and logs: never the password."""
        if self.scheme == "maildir":
            return f"Maildir {self.path}"
        tls = "TLS" if self.scheme == "smtps" else "STARTTLS" if self.starttls else "unencrypted"
        user = f"{self.user}@" if self.user else ""
        return f"smtp {user}{self.host}:{self.port} ({tls})"


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _int(name: str, default: int, *, least: int = 1, most: int | None = None) -> int:
    raw = _env(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if value < least:
        raise ConfigError(f"{name} must be at least {least}, not {value}")
    if most is not None and value > most:
        raise ConfigError(f"{name} must be at most {most}, not {value}")
    return value


def _rate(name: str, default: float) -> float:
    raw = _env(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of mails per second (e.g. 20 or 0.5), "
                          f"not {raw!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"{name} must be 0 (no limit) or a positive number, not {raw!r}")
    return value


def _smtp_from_env(instance: Path, embedded: bool) -> SmtpConfig | None:
    if os.environ.get("SMTP_URL"):
        return SmtpConfig.from_url(os.environ["SMTP_URL"])
    if os.environ.get("SMTP_HOST"):
        return SmtpConfig.from_parts(
            host=os.environ["SMTP_HOST"], port=os.environ.get("SMTP_PORT"),
            user=os.environ.get("SMTP_USER"), password=os.environ.get("SMTP_PASSWORD"),
            implicit_tls=_flag("SMTP_TLS", os.environ.get("SMTP_TLS"), False),
            starttls=os.environ.get("SMTP_STARTTLS"),
            allow_plaintext=os.environ.get("SMTP_ALLOW_PLAINTEXT"))
    # Only the embedded mode has a default: mails land in a local Maildir.
    return SmtpConfig("maildir", path=str(instance / "mailbox")) if embedded else None


@dataclass(frozen=True)
class Settings:
    instance_dir: Path
    database_url: str
    broker_url: str
    smtp: SmtpConfig | None  # None: not configured (outside the embedded mode)
    base_url: str
    timezone: str
    secret_key: str
    mail_from: str
    coordinator_emails: tuple[str, ...]
    coordinator_emails_source: str  # "COORDINATOR_EMAILS" or "default"
    sweep_interval_seconds: int
    relay_interval_seconds: int
    send_lease_seconds: int
    dispatch_lease_seconds: int
    send_batch_size: int
    max_send_attempts: int
    send_rate_per_second: float = 0.0  # 0: no limit
    send_burst: int = 1  # mails that may leave at once after a quiet spell
    trusted_proxies: int = 0
    ratelimit_storage_url: str = "memory://"
    embedded: bool = False
    # VERP: each mail's envelope sender is bounces+<id>-<mac>@… of this address (None: From).
    bounce_address: str | None = None
    bounce_maildir: Path | None = None  # where the mail server delivers the bounce address

    @property
    def maildir(self) -> Path | None:
        return Path(self.smtp.path) if self.smtp and self.smtp.scheme == "maildir" else None

    @property
    def uploads_dir(self) -> Path:
        return self.instance_dir / "uploads"

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")

    def require_smtp(self) -> SmtpConfig:
        if self.smtp is None:
            raise ConfigError("SMTP_URL is not set: without it no mail can leave. Set SMTP_URL "
                              "(e.g. smtp://user:password@mail.example.org:587) or SMTP_HOST, "
                              "SMTP_PORT, SMTP_USER and SMTP_PASSWORD.")
        return self.smtp

    @classmethod
    def from_env(cls) -> "Settings":
        instance = _instance_dir(_env("INSTANCE_PATH", str(Path.cwd() / "instance")))
        broker = _broker_url(_env("CELERY_BROKER_URL", "memory://"))
        embedded = broker.startswith("memory://")
        coordinators = tuple(e.strip() for e in os.environ.get("COORDINATOR_EMAILS", "").split(",")
                             if e.strip())
        return cls(
            instance_dir=instance,
            database_url=_database_url(_env("DATABASE_URL",
                                            f"sqlite:///{instance / 'reportcycles.sqlite'}")),
            broker_url=broker,
            smtp=_smtp_from_env(instance, embedded),
            base_url=_env("BASE_URL", "http://127.0.0.1:8000").rstrip("/"),
            timezone=_time_zone(_env("TIMEZONE", "Europe/Berlin")),
            secret_key=_env("SECRET_KEY", "") or instance_secret(instance),
            mail_from=_env("MAIL_FROM", "Erfolgsfaktor Interkulturelle Öffnung <berichte@example.org>"),
            coordinator_emails=coordinators or DEFAULT_COORDINATORS,
            coordinator_emails_source="COORDINATOR_EMAILS" if coordinators else "default",
            sweep_interval_seconds=_int("SWEEP_INTERVAL_SECONDS", 300),
            relay_interval_seconds=_int("RELAY_INTERVAL_SECONDS", 30),
            send_lease_seconds=_int("SEND_LEASE_SECONDS", 600),
            dispatch_lease_seconds=_int("DISPATCH_LEASE_SECONDS", 30, least=0),
            # A batch holds one lock per mail on PostgreSQL, whose lock table is shared by all
            # connections: 64 × max_connections entries by default (see uow.MAIL_LOCKS).
            send_batch_size=_int("SEND_BATCH_SIZE", 100, most=500),
            max_send_attempts=_int("MAX_SEND_ATTEMPTS", 8),
            send_rate_per_second=_rate("SEND_RATE_PER_SECOND", 0),
            send_burst=max(1, _int("SEND_BURST", 1)),
            trusted_proxies=_int("TRUSTED_PROXIES", 0, least=0),
            ratelimit_storage_url=_env("RATELIMIT_STORAGE_URL",
                                       broker if broker.startswith("redis") else "memory://"),
            embedded=embedded,
            bounce_address=_bounce_address(),
            bounce_maildir=_bounce_maildir(),
        )


DATABASE_DRIVERS = ("sqlite", "postgresql", "postgresql+psycopg")
BROKER_SCHEMES = ("memory", "redis", "rediss", "sentinel", "amqp", "pyamqp")


def _database_url(value: str) -> str:
    try:
        driver = make_url(value).drivername
    except ArgumentError:
        driver = None
    if driver not in DATABASE_DRIVERS:
        raise ConfigError(f"DATABASE_URL must be sqlite:///path/to/file.sqlite or "
                          f"postgresql+psycopg://user:password@host/database, not {value!r}")
    return value


def _broker_url(value: str) -> str:
    if value.partition("://")[0] not in BROKER_SCHEMES or "://" not in value:
        raise ConfigError(f"CELERY_BROKER_URL must be redis://host:6379/0 (or memory:// for the "
                          f"embedded demo), not {value!r}")
    return value


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ValueError, ZoneInfoNotFoundError):
        raise ConfigError(f"TIMEZONE must be a zone like Europe/Berlin, not {value!r}") from None
    return value


def _instance_dir(value: str) -> Path:
    instance = Path(value).resolve()
    try:
        instance.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"INSTANCE_PATH {value!r} cannot be used as a folder: "
                          f"{exc.strerror or exc}") from None
    return instance


def _bounce_address() -> str | None:
    value = os.environ.get("BOUNCE_ADDRESS", "").strip()
    if not value:
        return None
    local, at, domain = value.rpartition("@")
    if not at or not local or "." not in domain or any(c in value for c in " <>,;"):
        raise ConfigError(f"BOUNCE_ADDRESS must be a bare address like "
                          f"bounces@berichte.example.org, not {value!r}")
    return value


def _bounce_maildir() -> Path | None:
    value = os.environ.get("BOUNCE_MAILDIR", "").strip()
    if not value:
        return None
    if not os.environ.get("BOUNCE_ADDRESS", "").strip():
        raise ConfigError("BOUNCE_MAILDIR is set but BOUNCE_ADDRESS is not: without an envelope "
                          "sender per mail (VERP) no bounce can be traced to its mail")
    return Path(value).resolve()


def instance_secret(instance: Path) -> str:
    """A per-installation secret kept in the instance folder, so `make run` needs no setup.

    Written to a private temporary file first and linked into place: several processes starting
    at once agree on one key, and no process ever sees a partial or world-readable file.
    """
    path = instance / "secret_key"
    instance.mkdir(parents=True, exist_ok=True)
    for _ in range(50):
        try:
            key = path.read_text().strip()
        except FileNotFoundError:
            key = ""
        if key:
            return key
        candidate = instance / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
            os.link(candidate, path)  # fails if another process was first: then read theirs
        except FileExistsError:
            time.sleep(0.01)
        finally:
            candidate.unlink(missing_ok=True)
    raise ConfigError(f"cannot read the secret key in {path}")
