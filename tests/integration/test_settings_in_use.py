"""Settings as an operator meets them: the embedded demo's mailbox, missing SMTP, the
coordinators' addresses, the secret key and secure cookies."""
from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from email.message import EmailMessage

from infra.mail import open_maildir
from infra.settings import Settings
from reportcycles.bootstrap import build
from tests.integration.conftest import make_settings, partner_csv
from tests.support.servers import ROOT
from tests.support.sign_in import make_account, sign_in
from web import create_app


def run_cli(env, *args):
    return subprocess.run([sys.executable, "-m", "reportcycles.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def base_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SMTP_") and k not in ("COORDINATOR_EMAILS", "CELERY_BROKER_URL")}
    return {**env, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "INSTANCE_PATH": str(tmp_path / "instance"), **extra}


def test_the_mailbox_page_exists_only_in_the_embedded_demo(services):
    served = create_app(settings=services.settings, services=services).test_client()
    assert served.get("/mailbox/").status_code == 404


def test_the_embedded_demo_shows_its_maildir(monkeypatch, tmp_path, database_url):
    monkeypatch.delenv("SMTP_URL", raising=False)
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("CELERY_BROKER_URL", "memory://")
    settings = Settings.from_env()
    services = build(settings, "none")
    try:
        app = create_app(settings=settings, services=services, show_mailbox=True)
        client = app.test_client()
        make_account(services, "koordination@example.org")
        sign_in(client, "koordination@example.org")
        assert client.get("/mailbox/").status_code == 200
        box = open_maildir(settings.maildir)
        for n, rung in enumerate(("invitation", "reminder-28", "link_resent")):
            mail = EmailMessage()
            mail["To"], mail["Subject"] = "p@example.org", f"Mail {n}"
            mail["Date"] = "Thu, 26 Nov 2026 11:52:28 +0000"  # all three in the same second
            mail["X-Reportcycles-Rung"] = rung
            box.add(mail)
        html = client.get("/mailbox/").get_data(as_text=True)
        assert html.count("<td>26.11.2026, 12:52 Uhr</td>") == 3  # Berlin time, in German
        assert "Einladung" in html and "Neuer persönlicher Link" in html
        assert "Erinnerung 28 Arbeitstage vor der Frist" in html and "reminder-28" not in html
        assert html.index("Mail 2") < html.index("Mail 1") < html.index("Mail 0")
        key = re.search(r'href="(/mailbox/[^"]+)">Mail 1<', html).group(1)
        one = client.get(key).get_data(as_text=True)
        assert "<dd>26.11.2026, 12:52 Uhr</dd>" in one and "+0000" not in one
        assert "<dd>Erinnerung 28 Arbeitstage vor der Frist</dd>" in one
    finally:
        services.database.dispose()


def test_outside_the_embedded_mode_no_smtp_setting_means_no_default_mailbox(monkeypatch, tmp_path):
    monkeypatch.delenv("SMTP_URL", raising=False)
    monkeypatch.delenv("SMTP_HOST", raising=False)
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    settings = Settings.from_env()
    assert settings.smtp is None and settings.maildir is None


def test_a_worker_without_smtp_settings_refuses_to_start_with_a_clear_message(tmp_path):
    result = run_cli(base_env(tmp_path, CELERY_BROKER_URL="redis://127.0.0.1:1/0"), "worker")
    assert result.returncode == 2
    assert "SMTP_URL is not set" in result.stderr and "Traceback" not in result.stderr


def test_coordinators_come_from_the_environment_only_for_a_new_programme(tmp_path):
    env = base_env(tmp_path, COORDINATOR_EMAILS="erste@example.org")
    (tmp_path / "partners.csv").write_text(partner_csv(1), encoding="utf-8")
    assert run_cli(env, "init").returncode == 0
    assert run_cli(env, "partners", "import", str(tmp_path / "partners.csv")).returncode == 0
    shown = run_cli({**env, "COORDINATOR_EMAILS": "zweite@example.org"}, "programme", "show")
    assert "erste@example.org" in shown.stdout and "zweite@example.org" not in shown.stdout
    assert "beim Anlegen aus COORDINATOR_EMAILS" in shown.stdout

    changed = run_cli(env, "programme", "coordinators", "a@example.org", "b@example.org")
    assert changed.returncode == 0, changed.stderr
    shown = run_cli(env, "programme", "show").stdout
    assert "a@example.org, b@example.org" in shown and "zuletzt geändert" in shown
    assert "von cli" in shown
    refused = run_cli(env, "programme", "coordinators", "kein-at-zeichen")
    assert refused.returncode == 2 and "Ungültige E-Mail-Adresse" in refused.stderr


def test_coordinator_mail_goes_to_the_programmes_current_coordinators(tmp_path, smtp):
    env = base_env(tmp_path, SMTP_URL=f"smtp://127.0.0.1:{smtp[0].port}",
                   COORDINATOR_EMAILS="alt@example.org")
    (tmp_path / "partners.csv").write_text(partner_csv(1), encoding="utf-8")
    for args in (["init"], ["partners", "import", str(tmp_path / "partners.csv")],
                 ["templates", "load", "nrw-vielfalt-2027"],
                 ["programme", "coordinators", "neu@example.org"],
                 ["cycles", "open", "--year", "2027", "--opens", "2027-02-01"],
                 ["sweep", "--at", "2027-05-03T08:30"]):
        result = run_cli(env, *args)
        assert result.returncode == 0, (args, result.stderr)
    notices = [m for m in smtp[1].messages
               if m["message"]["X-Reportcycles-Rung"] == "deadline_notice"]
    assert [n["envelope_to"] for n in notices] == [["neu@example.org"]]


def test_several_processes_starting_at_once_agree_on_one_private_secret_key(tmp_path):
    code = ("from pathlib import Path; from infra.settings import instance_secret; "
            f"print(instance_secret(Path({str(tmp_path / 'instance')!r})))")

    def start(_):
        return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                              text=True, timeout=60).stdout.strip()

    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(start, range(8)))
    assert len(keys) == 1 and len(keys.pop()) > 40
    key_file = tmp_path / "instance" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [p.name for p in key_file.parent.iterdir()] == ["secret_key"]  # no temporary left


def test_session_cookies_are_secure_when_the_site_is_served_over_https(
        monkeypatch, tmp_path, database_url, smtp):
    settings, _ = make_settings(monkeypatch, tmp_path, database_url, smtp[0].port,
                                BASE_URL="https://berichte.example.org")
    services = build(settings, "none")
    try:
        client = create_app(settings=settings, services=services).test_client()
        page = client.get("/login")  # the sign-in form carries a CSRF token
        assert "Secure" in page.headers["Set-Cookie"] and "HttpOnly" in page.headers["Set-Cookie"]
        make_account(services, "koordination@example.org")
        signed_in = sign_in(client, "koordination@example.org")
        cookies = signed_in.headers.getlist("Set-Cookie")
        assert cookies and all("Secure" in c and "HttpOnly" in c for c in cookies)
    finally:
        services.database.dispose()
