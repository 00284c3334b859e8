"""Real servers for the integration tests, on loopback and free ports, stopped afterwards.

A server that cannot start fails the test run loudly: nothing here ever skips.
"""
from __future__ import annotations

import asyncio
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from email import message_from_bytes, policy
from pathlib import Path

from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def _pg_bindir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not candidates:
        raise RuntimeError("PostgreSQL is not installed: run `make test`, which installs it")
    return Path(candidates[-1]).parent


class PostgresServer:
    """A throwaway cluster: initdb in a temp dir, its own socket dir and port."""

    def __init__(self):
        self.bindir = _pg_bindir()
        self.tmp = Path(tempfile.mkdtemp(prefix="rc-pg-"))
        self.port = free_port()
        self.as_root = os.geteuid() == 0

    def _run(self, *args, **kwargs):
        cmd = [str(a) for a in args]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs)

    def start(self):
        if self.as_root:
            shutil.chown(self.tmp, "postgres", "postgres")
        data = self.tmp / "data"
        self._run(self.bindir / "initdb", "-D", data, "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        self._run(self.bindir / "pg_ctl", "-D", data, "-l", self.tmp / "log", "-w", "-t", "60",
                  "-o", f"-p {self.port} -k {self.tmp} -c listen_addresses=127.0.0.1 "
                  "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                  "-c max_connections=200", "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self):
        try:
            self._run(self.bindir / "pg_ctl", "-D", self.tmp / "data", "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


class RedisServer:
    def __init__(self):
        self.port = free_port()
        self.proc = None

    def start(self):
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed: run `make test`, which installs it")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, proc=self.proc)
        return self

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def restart_empty(self):
        """Stop without saving and start again: every queued message is gone."""
        self.stop()
        self.start()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class RecordingHandler:
    """aiosmtpd handler that keeps every accepted message; can answer 4xx/5xx on demand. Like
    the servers mail goes to in practice it offers PIPELINING (aiosmtpd reads pipelined
    commands one after the other but does not say so); ``pipelining = False`` hides it."""

    def __init__(self):
        self.messages = []
        self.lock = threading.Lock()
        self.fail_next: list[str] = []  # SMTP replies to give instead of accepting, in order
        self.refuse_recipients: dict[str, str] = {}  # address -> reply, e.g. "550 no such user"
        self.refuse_sender: str | None = None  # the reply to MAIL FROM, e.g. "550 not you"
        self.delay = 0.0  # seconds to wait before answering DATA (a slow server)
        self.pipelining = True

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if not self.pipelining:
            return responses
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.refuse_sender:
            return self.refuse_sender
        envelope.mail_from, envelope.mail_options = address, list(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse_recipients:
            return self.refuse_recipients[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            if self.fail_next:
                return self.fail_next.pop(0)
            message = message_from_bytes(envelope.content, policy=policy.default)
            self.messages.append({"envelope_to": list(envelope.rcpt_tos), "message": message,
                                  "envelope_from": envelope.mail_from})
        return "250 Message accepted for delivery"

    def clear(self):
        with self.lock:
            self.messages.clear()
            self.fail_next.clear()
            self.refuse_recipients.clear()


@contextmanager
def smtp_server(**options):
    """aiosmtpd on a free loopback port; ``options`` go to its Controller (auth, TLS)."""
    handler = RecordingHandler()
    port = options.pop("port", None) or free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield controller, handler
    finally:
        controller.stop()


def self_signed_certificate(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A certificate for ``host`` made with openssl; trust it with SMTP_CA_FILE=cert."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={host}", "-addext", f"subjectAltName=IP:{host}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


class CeleryWorker:
    """A real `celery worker` process (prefork) for the given environment."""

    def __init__(self, env: dict, concurrency: int = 2, logfile: Path | None = None):
        self.env = env
        self.concurrency = concurrency
        self.proc = None
        self.logfile = logfile or Path(tempfile.mkstemp(prefix="rc-worker-", suffix=".log")[1])

    def start(self):
        with open(self.logfile, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "reportcycles.worker", "worker",
                 "--loglevel=INFO", f"--concurrency={self.concurrency}", "--pool=prefork",
                 "--without-gossip", "--without-mingle", "--without-heartbeat",
                 "-n", f"test{free_port()}@localhost"],
                cwd=ROOT, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited: {self.log_tail()}")
            if b"ready." in self.logfile.read_bytes():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"celery worker not ready after 60s: {self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.logfile.read_bytes()[-chars:].decode(errors="replace")

    def kill(self):
        """SIGKILL the whole process group: main process and pool children die at once."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
