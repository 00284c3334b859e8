"""Logging in to a real SMTP server with an ordinary password, in clear text only when allowed."""
from __future__ import annotations

import os
import ssl
import subprocess
import sys

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.integration.conftest import partner_csv
from tests.support.servers import ROOT, self_signed_certificate, smtp_server

USER, PASSWORD = "berichte@example.org", "p@ss#w0rd"


def check_password(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(), PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


def rehearse_invitations(tmp_path, smtp_env: dict) -> subprocess.CompletedProcess:
    """init, partners, template, cycle and one sweep through the real command line."""
    (tmp_path / "partners.csv").write_text(partner_csv(2), encoding="utf-8")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SMTP_")},
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
           "INSTANCE_PATH": str(tmp_path / "instance"), "CELERY_BROKER_URL": "", **smtp_env}
    result = None
    for args in (["init"], ["partners", "import", str(tmp_path / "partners.csv")],
                 ["templates", "load", "nrw-vielfalt-2027"],
                 ["cycles", "open", "--year", "2027", "--opens", "2027-02-01"],
                 ["sweep", "--at", "2027-02-01T08:30"]):
        result = subprocess.run([sys.executable, "-m", "reportcycles.cli", *args], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=120)
        if result.returncode:
            return result
    return result


def test_a_password_with_at_and_hash_logs_in_when_given_as_separate_settings(tmp_path):
    with smtp_server(authenticator=check_password, auth_require_tls=False) as (server, handler):
        result = rehearse_invitations(tmp_path, {
            "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(server.port), "SMTP_USER": USER,
            "SMTP_PASSWORD": PASSWORD, "SMTP_ALLOW_PLAINTEXT": "1"})
        assert result.returncode == 0, result.stderr
        assert len(handler.messages) == 2


def test_starttls_with_login_reaches_a_server_with_a_private_ca(tmp_path):
    cert, key = self_signed_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with smtp_server(authenticator=check_password, tls_context=context,
                     require_starttls=True) as (server, handler):
        result = rehearse_invitations(tmp_path, {
            "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(server.port), "SMTP_STARTTLS": "1",
            "SMTP_USER": USER, "SMTP_PASSWORD": PASSWORD, "SMTP_CA_FILE": str(cert)})
        assert result.returncode == 0, result.stderr
        assert len(handler.messages) == 2


@pytest.mark.parametrize("smtp_env", [
    {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": "2525", "SMTP_USER": USER, "SMTP_PASSWORD": PASSWORD},
    {"SMTP_URL": "smtp://u:secret@127.0.0.1:2525"},
])
def test_a_clear_text_login_is_refused_before_anything_happens(tmp_path, smtp_env):
    result = rehearse_invitations(tmp_path, smtp_env)
    assert result.returncode == 2
    assert "unverschlüsselt" in result.stderr or "unencrypted" in result.stderr
    assert "SMTP_ALLOW_PLAINTEXT" in result.stderr and "Traceback" not in result.stderr
    assert PASSWORD not in result.stderr and "secret" not in result.stderr
