"""The package as an operator installs it: a wheel in a fresh virtualenv, used from a folder
outside the checkout, sends a real mail with the shipped templates."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv

import pytest

from tests.support.servers import ROOT

pytestmark = pytest.mark.slow
NOT_SHIPPED = shutil.ignore_patterns(".git", ".venv", "instance", "build", "dist", "*.egg-info",
                                     "__pycache__", ".pytest_cache", "tests", "bench")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A wheel built from a copy of the source, installed into a new virtualenv."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SHIPPED)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w",
                    str(work / "dist"), str(source)], check=True, capture_output=True)
    [wheel] = (work / "dist").glob("reportcycles-*.whl")
    venv.create(work / "venv", with_pip=True)
    pip = subprocess.run([str(work / "venv" / "bin" / "pip"), "install", "--quiet", str(wheel)],
                         capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-3000:]
    shutil.rmtree(source)  # nothing may be read from a checkout
    return work / "venv"


def run(venv_dir, cwd, env, *args):
    return subprocess.run([str(venv_dir / "bin" / "reportcycles"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)


def test_an_installed_wheel_sends_a_real_mail_from_outside_the_checkout(installed, tmp_path,
                                                                       smtp):
    site = tmp_path / "betrieb"
    site.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "DATABASE_URL", "INSTANCE_PATH", "CELERY_BROKER_URL")}
    env["SMTP_URL"] = f"smtp://127.0.0.1:{smtp[0].port}"
    for args in (["init"], ["demo"], ["sweep"]):
        result = run(installed, site, env, *args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    received = smtp[1].messages
    assert len(received) >= 29 + 9  # the demo's partners and the nine member cities
    invitation = received[0]["message"]
    body = invitation.get_body(("plain",)).get_content()
    assert "/r/" in body and "Erfolgsfaktor Interkulturelle Öffnung" in body
    assert invitation.get_body(("html",)) is not None
    # The instance folder is where the operator stands, never inside the installed package.
    assert (site / "instance" / "reportcycles.sqlite").exists()
    assert (site / "instance" / "secret_key").exists()
    assert not list(installed.glob("lib/python*/site-packages/instance"))
    assert not list(installed.glob("lib/python*/site-packages/*/instance"))


def test_an_installed_wheel_carries_migrations_templates_and_data(installed, tmp_path):
    code = ("from infra.mail import email_templates_dir; from reportcycles.cli import DATA; "
            "print(email_templates_dir()); print(sorted(p.name for p in "
            "(DATA / 'report_templates').glob('*.json')))")
    shown = subprocess.run([str(installed / "bin" / "python"), "-c", code], cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert "site-packages" in shown[0] and shown[1] == "['nrw-vielfalt-2027.json']"
    other = run(installed, tmp_path, {**os.environ, "INSTANCE_PATH": str(tmp_path / "elsewhere")},
                "init")
    assert other.returncode == 0 and (tmp_path / "elsewhere" / "reportcycles.sqlite").exists()
