"""Every command of `reportcycles` with any arguments: exit 0, 2 (a refusal or argparse, with a
message on stderr) or 3 (database not initialised) – never a traceback – and a refused command
leaves the database as it was."""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from reportcycles.cli import build_parser, main
from tests.support.servers import ROOT
from tests.support.strategies import (FileArg, argument_lists, commands_of, environment,
                                      property_settings)

# A failing example may carry a file of 130 kB; hypothesis warns that its repr is large.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

LONG_RUNNING = ("worker", "scheduler", "serve", "run", "health")
COMMANDS = commands_of(build_parser(), exclude=LONG_RUNNING)
STATES = ("seeded", "migrated", "absent", "seeded")
REFUSALS = ("Fehler", "usage:", "Datenbankfehler", "reportcycles: error")


def test_every_command_of_the_parser_is_covered():
    """A new command is found by introspection; this names what the properties run."""
    paths = {" ".join(c.path) for c in COMMANDS}
    assert {"init", "demo", "partners import", "cycles open", "cycles status", "sweep",
            "preview", "programme show", "programme coordinators", "policy show", "policy set",
            "templates load", "reports return", "reports accept", "extensions list",
            "extensions decide", "relay", "outbox status", "outbox retry"} <= paths
    assert not paths & set(LONG_RUNNING)


def materialise(argv: list, folder: Path) -> list[str]:
    """Write the example's files; every argument becomes a string."""
    folder.mkdir(parents=True, exist_ok=True)
    result = []
    for number, arg in enumerate(argv):
        if not isinstance(arg, FileArg):
            result.append(arg)
            continue
        path = folder / f"{number}-{arg.name}".replace("\x00", "")  # argv has no NUL
        try:
            if arg.directory:
                path.mkdir(parents=True, exist_ok=True)
            elif arg.content is not None:
                path.write_bytes(arg.content)
        except (OSError, ValueError):  # a name no file system takes: the command is told so
            pass
        result.append(str(path))
    return result


def dump(database: Path) -> dict:
    """Every row of every table that has rows (the schema alone is no data: `demo` migrates
    before it may refuse)."""
    if not database.exists():
        return {}
    with contextlib.closing(sqlite3.connect(database)) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'alembic_version'")]
        rows = {table: conn.execute(f'SELECT * FROM "{table}" ORDER BY rowid').fetchall()
                for table in tables}
    return {table: found for table, found in rows.items() if found}


@contextlib.contextmanager
def instance(state: str, sources: dict[str, Path], smtp_port: int | None):
    """A fresh instance folder and database in ``state``, the settings pointing at them."""
    with tempfile.TemporaryDirectory(prefix="rc-cli-") as tmp:
        folder = Path(tmp)
        database = folder / "instance" / "reportcycles.sqlite"
        database.parent.mkdir()
        if state != "absent":
            shutil.copy(sources[state], database)
        smtp = f"smtp://127.0.0.1:{smtp_port}" if smtp_port else None
        with environment(DATABASE_URL=f"sqlite:///{database}", INSTANCE_PATH=folder / "instance",
                         SMTP_URL=smtp, SECRET_KEY="property-secret"), \
                contextlib.chdir(folder):
            yield folder, database


def run_main(argv: list[str]) -> tuple[int, str, str]:
    """``main`` in this process, its output encoded as a console's would be (stdout strict,
    stderr with backslash escapes, as Python sets them up)."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse: 2 on bad arguments, 0 after --help
            code = exit_.code
    texts = []
    for stream in (out, err):
        stream.flush()
        texts.append(stream.buffer.getvalue().decode("utf-8"))
        stream.close()
    return code, texts[0], texts[1]


@pytest.fixture(scope="module")
def sources(migrated_sqlite, seeded_sqlite):
    return {"migrated": migrated_sqlite, "seeded": seeded_sqlite}


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c.path))
@property_settings(20, fixtures=True)
@given(data=st.data(), state=st.sampled_from(STATES), with_smtp=st.booleans())
def test_any_arguments_end_in_a_result_or_a_clear_refusal(sources, smtp_session, command, data,
                                                         state, with_smtp):
    argv = data.draw(argument_lists([command]), label="argv")
    code = refused_in_a_clear_way(sources, smtp_session, argv, state, with_smtp)
    event(f"{state}: exit {code}")  # --hypothesis-show-statistics: how far the examples got


KNOWN_FAILURES = [  # minimal examples the property above found (each a traceback once)
    ["cycles", "status", "9223372036854775808"],
    ["extensions", "decide", "9223372036854775808", "--refuse"],
    ["outbox", "retry", "9223372036854775808"],
    ["demo", "--year", "0"],
    ["sweep", "--at", "0001-01-01T00:00+01:00"],
    ["cycles", "open", "--year", "2028", "--due", "9999-12-31"],
    ["extensions", "decide", "1", "--grant", "--due", "9999-12-31"],
    ["preview", "--year", "2027", "--partner", "\udcff"],  # the byte 0xFF from a shell
    ["templates", "load", FileArg("dir", b"", directory=True)],
    ["templates", "load", FileArg("t.json", b"\xff")],
    ["templates", "load", FileArg("t.json", b'{"sections": [1]}')],
    ["templates", "load", FileArg("t.json", b'{"sections": [{"questions": [{"id": "a", '
                                            b'"type": "count"}]}]}')],
    ["templates", "load", FileArg("t.json", b'{"rules": [null]}')],
    ["templates", "load", FileArg("t.json", b'{"year": "x", "sections": [{"questions": [{"id": '
                                            b'"a", "type": "count", "label": {}}]}]}')],
    ["templates", "load", FileArg("deep.json", b"[" * 5_000 + b"]" * 5_000)],
    ["templates", "load", FileArg("t.json", b'{"sections": [{"questions": [{"id": "a", '
                                            b'"type": "count", "min": NaN}]}]}')],
    ["policy", "set", FileArg("dir", b"", directory=True)],
    ["policy", "set", FileArg("p.json", b'{"window_start": 5}')],
    ["policy", "set", FileArg("p.toml", b'holiday_country = "XX"')],
    ["policy", "set", FileArg("p.toml", b'link_grace_days = 999999999')],
    ["policy", "set", FileArg("p.toml", b'cycle_due = "02-29"')],
]


@pytest.mark.parametrize("argv", KNOWN_FAILURES, ids=lambda argv: " ".join(
    a if isinstance(a, str) else f"{a.name}:{a.content[:60]!r}" for a in argv))
def test_arguments_found_by_the_property_end_in_a_clear_refusal(sources, smtp_session, argv):
    refused_in_a_clear_way(sources, smtp_session, argv, "seeded", with_smtp=False)


REFUSED = [
    # A bare date was not checked (a sweep "in 9999" escalated every partner), "" meant "now".
    *(["sweep", "--at", at] for at in ("9999-12-31", "0001-01-01", "", " ")),
    # The dates of a cycle lie near its year, on the command line as on the set-up page.
    ["cycles", "open", "--year", "2030", "--opens", "2000-01-01", "--due", "2000-01-02"],
    ["demo", "--year", "2028", "--due", "2026-01-01"],
    # A name longer than any (the database said "LIKE pattern too complex", blaming `init`).
    ["preview", "--year", "2027", "--partner", "x" * 100_000],
]


@pytest.mark.parametrize("argv", REFUSED, ids=lambda argv: " ".join(argv)[:80])
def test_what_would_run_on_meaningless_dates_is_refused(sources, smtp_session, argv):
    code = refused_in_a_clear_way(sources, smtp_session, argv, "seeded", with_smtp=False)
    assert code == 2


def refused_in_a_clear_way(sources, smtp_session, argv, state, with_smtp):
    with instance(state, sources, smtp_session[0].port if with_smtp else None) as (folder,
                                                                                   database):
        args = materialise(argv, folder / "files")
        before = dump(database)
        code, out, err = run_main(args)
        assert code in (0, 2, 3), (code, out, err)
        assert "Traceback" not in out + err
        if code:
            assert err.strip(), "a refusal without a message"
            assert err.lstrip().startswith(REFUSALS), err
            if "--help" not in args and "-h" not in args:
                # A command that migrates first (demo) may leave the bare schema behind.
                allowed = [before] + ([dump(sources["migrated"])] if state == "absent" else [])
                assert dump(database) in allowed, "a refused command changed the database"
        return code


@property_settings(3, fixtures=True)
@given(argv=argument_lists(COMMANDS).filter(
    lambda argv: not any(isinstance(a, FileArg) for a in argv)))
def test_any_arguments_in_a_real_process_end_without_a_traceback(sources, argv, tmp_path):
    """The same through the console script's module, as a coordinator runs it."""
    database = tmp_path / "instance" / "reportcycles.sqlite"
    database.parent.mkdir(exist_ok=True)
    shutil.copy(sources["seeded"], database)
    env = {k: v for k, v in os.environ.items()
           if k not in ("CELERY_BROKER_URL", "SMTP_URL", "SMTP_HOST", "BOUNCE_MAILDIR")}
    env.update(DATABASE_URL=f"sqlite:///{database}", INSTANCE_PATH=str(database.parent),
               SECRET_KEY="property-secret")
    result = subprocess.run([sys.executable, "-m", "reportcycles.cli", *argv], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode in (0, 2, 3), (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
