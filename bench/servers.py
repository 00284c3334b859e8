"""Real servers for the benchmarks, on loopback and free ports, stopped afterwards.

A throwaway PostgreSQL cluster (initdb on a temp socket directory, default durability: fsync and
synchronous commits on, as in production), a Redis broker, Postfix's `smtp-sink` (a C receiver
that keeps up with any Python sender) and real `celery worker` processes. Whatever cannot start
fails the benchmark loudly.
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "reportcycles-bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class Postgres:
    """initdb into a temp directory; the server listens on 127.0.0.1 and a socket in that dir."""

    def __init__(self):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise RuntimeError("PostgreSQL is not installed: `make bench` installs it "
                               "(target system-deps)")
        self.bindir = Path(found[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="rc-bench-pg-"))
        self.port = free_port()
        self.as_root = os.geteuid() == 0

    def _run(self, *args):
        cmd = [str(a) for a in args]
        if self.as_root:  # PostgreSQL refuses to run as root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True)

    def start(self) -> "Postgres":
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        data = self.dir / "data"
        self._run(self.bindir / "initdb", "-D", data, "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--locale=C.UTF-8")
        self._run(self.bindir / "pg_ctl", "-D", data, "-l", self.dir / "log", "-w", "-t", "60",
                  "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                  "-c max_connections=200", "start")
        return self

    def cpu(self) -> float:
        """CPU seconds of the server and its living backends."""
        postmaster = int((self.dir / "data" / "postmaster.pid").read_text().split()[0])
        return process_tree_cpu(postmaster)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres"):
        """One statement outside a transaction (CREATE/DROP DATABASE, VACUUM)."""
        import psycopg
        with psycopg.connect(self.url(database).replace("+psycopg", ""),
                             autocommit=True) as conn:
            conn.execute(statement)

    def create_database(self, name: str, template: str | None = None):
        self.sql(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))

    def drop_database(self, name: str):
        self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self):
        try:
            self._run(self.bindir / "pg_ctl", "-D", self.dir / "data", "-m", "fast", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    def __init__(self):
        self.port = free_port()
        self.proc = None

    def start(self) -> "Redis":
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed: `make bench` installs it")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.proc)
        return self

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def flush(self):
        import redis
        redis.Redis.from_url(self.url).flushall()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def smtp_sink_binary() -> tuple[Path, Path]:
    """Postfix's smtp-sink and its private libraries, unpacked from Debian's package into the
    cache (nothing is installed): `apt-get download postfix` and `dpkg -x`."""
    root = CACHE / "postfix"
    exe, libs = root / "usr/sbin/smtp-sink", root / "usr/lib/postfix"
    if exe.exists():
        return exe, libs
    download = CACHE / "download"
    shutil.rmtree(download, ignore_errors=True)
    download.mkdir(parents=True)
    fetch = ["apt-get", "download", "postfix"]
    if subprocess.run(fetch, cwd=download, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
        subprocess.run(fetch, cwd=download, check=True, capture_output=True)
    [deb] = download.glob("postfix_*.deb")
    unpacked = CACHE / "postfix.tmp"
    shutil.rmtree(unpacked, ignore_errors=True)
    subprocess.run(["dpkg", "-x", str(deb), str(unpacked)], check=True)
    unpacked.rename(root)
    shutil.rmtree(download, ignore_errors=True)
    return exe, libs


class SmtpSink:
    """smtp-sink in its own process; every message it takes is dumped to one file (in /dev/shm
    when there is one, so that the receiver never waits for a disk)."""

    def __init__(self):
        self.exe, self.libs = smtp_sink_binary()
        self.port = free_port()
        base = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.dir = Path(tempfile.mkdtemp(prefix="rc-bench-sink-", dir=base))
        self.dump = self.dir / "mail"
        self.dump.mkdir()
        self.proc = None

    def start(self) -> "SmtpSink":
        user = []
        if os.geteuid() == 0:  # smtp-sink refuses to run as root without a user to become
            user = ["-u", "nobody"]
            self.dir.chmod(0o755)  # mkdtemp's 0700 would keep that user out
            shutil.chown(self.dump, "nobody")
        with open(self.dir / "counters", "wb") as out:
            self.proc = subprocess.Popen(
                [str(self.exe), *user, "-c", "-d", f"{self.dump}/", f"127.0.0.1:{self.port}",
                 "256"], stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "LD_LIBRARY_PATH": str(self.libs)})
        wait_for_port(self.port, self.proc)
        return self

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def cpu(self) -> float:
        return process_tree_cpu(self.proc.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def files(self) -> list[Path]:
        return [Path(entry.path) for entry in os.scandir(self.dump)]

    def message_count(self) -> int:
        return sum(1 for _ in os.scandir(self.dump))

    def counters(self) -> str:
        """smtp-sink's own last counter line (sessions, QUITs, messages)."""
        text = (self.dir / "counters").read_bytes().decode(errors="replace")
        lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def counted(self) -> int:
        """Messages by smtp-sink's own count (`-c`)."""
        fields = dict(part.split("=", 1) for part in self.counters().split() if "=" in part)
        return int(fields.get("mesg", 0))

    def received(self) -> list[tuple[list[str], bytes]]:
        """Each dumped message: its RCPT TO addresses and the message as the client sent it."""
        return [split_dump(path.read_bytes()) for path in self.files()]

    def stop(self):
        try:
            if self.proc and self.proc.poll() is None:
                self.proc.terminate()
                self.proc.wait(10)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


_SINK_HEADERS = (b"X-Client-Addr:", b"X-Client-Proto:", b"X-Helo-Args:", b"X-Mail-Args:",
                 b"X-Rcpt-Args:", b"Received:")


def split_dump(raw: bytes) -> tuple[list[str], bytes]:
    """Remove the headers smtp-sink puts in front of a dumped message (and its final empty
    line); returns the recipients it recorded and the message, CRLF line ends."""
    lines = raw.split(b"\n")
    recipients, position, in_sink_header = [], 0, False
    for position, line in enumerate(lines):
        if line.startswith(_SINK_HEADERS):
            in_sink_header = True
            if line.startswith(b"X-Rcpt-Args:"):
                recipients.append(line.split(b":", 1)[1].strip().strip(b"<>").decode())
        elif in_sink_header and line[:1] in (b" ", b"\t"):
            continue  # a folded line of the Received header
        else:
            break
    body = lines[position:]
    if body and body[-1] == b"":
        body.pop()
    if body and body[-1] == b"":
        body.pop()  # the empty line smtp-sink appends
    return recipients, b"\r\n".join(body) + b"\r\n"


def message_ids(messages: list[bytes]) -> list[str]:
    found = []
    for message in messages:
        head = message.split(b"\r\n\r\n", 1)[0]
        for line in head.split(b"\r\n"):
            if line[:11].lower() == b"message-id:":
                found.append(line[11:].strip().decode(errors="replace"))
                break
    return found


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants (from /proc)."""
    pids, pending = [], [pid]
    while pending:
        current = pending.pop()
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    pending.extend(int(child) for child in children.read().split())
        except FileNotFoundError:
            continue  # the process ended meanwhile
        pids.append(current)
    return pids


def process_tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    total = 0
    for current in process_tree(pid):
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except FileNotFoundError:
            continue
    return total


TICKS = os.sysconf("SC_CLK_TCK")


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its descendants: the living
    ones, and those that ended and were waited for (counted in their parent's cutime)."""
    total = 0
    for current in process_tree(pid):
        try:
            with open(f"/proc/{current}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
        except FileNotFoundError:
            continue
    return total / TICKS


def machine_busy() -> float:
    """CPU seconds all processes on this machine have used (from /proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / TICKS


class CeleryWorker:
    """A real `celery worker` process (prefork, one pool process per core by default)."""

    def __init__(self, env: dict, concurrency: int, logfile: Path):
        self.env, self.concurrency, self.logfile = env, concurrency, logfile
        self.proc = None

    def start(self) -> "CeleryWorker":
        with open(self.logfile, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "reportcycles.worker", "worker",
                 "--loglevel=INFO", f"--concurrency={self.concurrency}", "--pool=prefork",
                 "--without-gossip", "--without-mingle", "--without-heartbeat",
                 "-n", f"bench{free_port()}@localhost"],
                cwd=ROOT, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited: {self.log_tail()}")
            if b"ready." in self.logfile.read_bytes() and self._pool_started():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"celery worker not ready after 60s: {self.log_tail()}")

    def _pool_started(self) -> bool:
        return len(self.pids()) >= 1 + self.concurrency

    def pids(self) -> list[int]:
        return process_tree(self.proc.pid)

    def rss(self) -> int:
        return process_tree_rss(self.proc.pid)

    def cpu(self) -> float:
        return process_tree_cpu(self.proc.pid)

    def log_tail(self, chars: int = 3000) -> str:
        return self.logfile.read_bytes()[-chars:].decode(errors="replace")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def bench_command(default: str) -> str:
    """How this run was started, for the results: BENCH_COMMAND (or ``default``) with the
    BENCH_ settings it does not name itself."""
    command = os.environ.get("BENCH_COMMAND") or default
    settings = " ".join(f"{k}={os.environ[k]}" for k in sorted(os.environ)
                        if k.startswith("BENCH_") and k != "BENCH_COMMAND"
                        and f"{k}=" not in command)
    return f"{settings} {command}".strip()
