"""A personal link in the URL of a failing request stays out of every log: gunicorn's access and
error logs, Flask's error log, the Celery worker's log and the command line's output."""
from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from infra.logs import redact
from tests.integration.conftest import partner_csv
from tests.support.servers import ROOT, CeleryWorker, free_port, wait_for_port

pytestmark = pytest.mark.slow


def test_redaction_covers_paths_urls_and_bare_tokens():
    token = "cnaxe3_-rZrqFZNcGMtQfGuwm_Yt3m1r34APa2ES5Wk"
    assert token not in redact(f"GET /r/{token}/form HTTP/1.1")
    assert token not in redact(f"https://berichte.example.org/r/{token}")
    assert token not in redact(f"KeyError: '{token}'")
    assert redact("send_batch {'sent': 20}") == "send_batch {'sent': 20}"


def test_an_error_on_a_link_route_leaves_no_token_in_any_log(tmp_path, smtp, redis_server):
    port = free_port()
    database = tmp_path / "db.sqlite"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}",
           "INSTANCE_PATH": str(tmp_path / "instance"), "SECRET_KEY": "test-secret",
           "SMTP_URL": f"smtp://127.0.0.1:{smtp[0].port}", "CELERY_BROKER_URL": redis_server.url,
           "BASE_URL": f"http://127.0.0.1:{port}"}
    (tmp_path / "partners.csv").write_text(partner_csv(1), encoding="utf-8")
    cli_output = []
    for args in (["init"], ["partners", "import", str(tmp_path / "partners.csv")],
                 ["templates", "load", "nrw-vielfalt-2027"],
                 ["cycles", "open", "--year", "2027", "--opens", "2027-02-01"],
                 ["-v", "sweep", "--at", "2027-02-01T08:30"]):
        done = subprocess.run([sys.executable, "-m", "reportcycles.cli", *args], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        cli_output.append(done.stdout + done.stderr)

    worker = CeleryWorker(env, concurrency=1, logfile=tmp_path / "worker.log").start()
    access_log, error_log = tmp_path / "access.log", tmp_path / "error.log"
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2",
         "--access-logfile", str(access_log), "--error-logfile", str(error_log),
         "--capture-output", "reportcycles.wsgi:create_app()"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not smtp[1].messages and time.monotonic() < deadline:
            time.sleep(0.2)
        [mail] = smtp[1].messages
        text = mail["message"].get_body(("plain",)).get_content()
        token = re.search(rf"127\.0\.0\.1:{port}/r/([A-Za-z0-9_-]+)", text).group(1)
        wait_for_port(port, proc=web)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/r/{token}") as page:
            assert page.status == 200
        # The form needs the report template: take its table away and the route fails.
        with sqlite3.connect(database) as db:
            db.execute("ALTER TABLE report_template RENAME TO report_template_gone")
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/r/{token}/form")
        failed.value.close()
        assert failed.value.code == 500
        time.sleep(0.5)  # let the log lines be flushed
    finally:
        web.terminate()
        web.wait(20)
        worker.stop()

    logs = {"access": access_log.read_text(), "error": error_log.read_text(),
            "worker": worker.logfile.read_text(), "cli": "\n".join(cli_output)}
    assert "Exception on /r/[link]/form [GET]" in logs["error"]  # the error was logged ...
    assert "Traceback" in logs["error"] and "report_template" in logs["error"]
    assert "/r/[link]" in logs["access"]
    assert "send_batch" in logs["worker"]
    for name, log in logs.items():
        assert token not in log, f"the personal link is in the {name} log"  # ... without the link
