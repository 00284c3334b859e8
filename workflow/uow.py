"""Database access: engine set-up, and the unit of work that commits once and dispatches after."""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Protocol

from sqlalchemy import (ARRAY, CompoundSelect, Select, any_, bindparam, case, create_engine, event,
                        func, literal_column, text)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

SQLITE_CHUNK = 900  # below SQLite's limit of bound parameters in one statement
WROTE = "reportcycles_wrote"  # on a connection's info: its transaction ran more than SELECTs
TRANSACTION_CONNECTION = "reportcycles_connection"  # on a session's info


class Dispatcher(Protocol):
    """Hands queued notifications to whoever sends them. Called only after a commit."""

    def send_notifications(self, ids: Sequence[int], as_of: datetime | None = None) -> None: ...

    def backlog(self) -> int | None:
        """Hand-overs still waiting at the broker; None when it cannot tell."""


class NoDispatch:
    """Leaves queued notifications to the relay (used where no worker is reachable)."""

    def send_notifications(self, ids, as_of=None):
        log.info("%d notifications left queued for the relay", len(ids))

    def backlog(self) -> int | None:
        return None


def make_engine(url: str, **kwargs) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False},
                               **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_setup(dbapi_conn, _record):
            # Let SQLAlchemy, not pysqlite, decide when transactions begin (SQLAlchemy docs recipe).
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # One writer at a time, decided when the transaction starts: no lock upgrades that fail.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    engine = create_engine(url, pool_pre_ping=True, **kwargs)

    @event.listens_for(engine, "begin")
    def _transaction_begins(conn):
        conn.info[WROTE] = False

    @event.listens_for(engine, "before_cursor_execute")
    def _statement(conn, _cursor, _statement, _parameters, context, _executemany):
        # Only a SELECT built with SQLAlchemy counts as a read: SQL text may write anything.
        compiled = getattr(context, "compiled", None)
        if compiled is None or not isinstance(compiled.statement, Select | CompoundSelect):
            conn.info[WROTE] = True

    return engine


def _sessions(bind, **options) -> sessionmaker:
    """Sessions for units of work: each notes the connection its transaction runs on."""
    factory = sessionmaker(bind, expire_on_commit=False, **options)

    @event.listens_for(factory, "after_begin")
    def _transaction_connection(session, _transaction, connection):
        session.info[TRANSACTION_CONNECTION] = connection

    return factory


class Database:
    def __init__(self, url: str, dispatcher: Dispatcher | None = None, **engine_kwargs):
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.session_factory = _sessions(self.engine)
        self.dispatcher: Dispatcher = dispatcher or NoDispatch()
        self._engine_kwargs = engine_kwargs
        self._records_factory = None
        self._reading_factory = None

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def unit_of_work(self, *, record: bool = False) -> "UnitOfWork":
        """``record``: a transaction that records what already happened outside (a mail left).
        On PostgreSQL its commit does not wait for the disk: a database crash can lose only the
        last records, whose mails are then sent once more with their Message-ID – the same as a
        worker killed after sending, which the ledger already allows for."""
        return UnitOfWork(self, self._records() if record else self.session_factory)

    def _records(self):
        if not self.is_postgres:
            return self.session_factory
        if self._records_factory is None:
            engine = make_engine(self.url, connect_args={"options": "-c synchronous_commit=off"},
                                 **self._engine_kwargs)
            self._records_factory = _sessions(engine)
        return self._records_factory

    def shared_reads(self) -> "SharedReads":
        """Single reads that share one connection until closed (``SharedReads``)."""
        return SharedReads(self)

    def _reading_sessions(self):
        if self._reading_factory is None:
            # No autoflush: a read must never write what a caller changed on a loaded object.
            self._reading_factory = _sessions(
                self.engine.execution_options(isolation_level="AUTOCOMMIT"), autoflush=False)
        return self._reading_factory

    def recorder(self) -> "Recorder":
        """Record transactions (see ``unit_of_work``) over one connection held for a block."""
        return Recorder(self, self._records().kw["bind"])

    def dispose(self):
        self.engine.dispose()
        if self._records_factory is not None:
            self._records_factory.kw["bind"].dispose()


class UnitOfWork:
    """One transaction. Rolls back unless ``commit()`` is called; after-commit work runs only then."""

    def __init__(self, database: Database, session_factory=None):
        self.database = database
        self.session_factory = session_factory or database.session_factory
        self.session: Session | None = None
        self._after_commit: list[Callable[[], None]] = []
        self._on_rollback: list[Callable[[], None]] = []

    def __enter__(self) -> "UnitOfWork":
        self.session = self.session_factory()
        return self

    def __exit__(self, exc_type, *exc):
        try:
            if exc_type is None and self._changed_nothing():
                self._end_unchanged()
            else:
                self.rollback()
        finally:
            self.session.close()

    def _changed_nothing(self) -> bool:
        """On PostgreSQL: the transaction ran only SELECTs built with SQLAlchemy and holds no
        pending change."""
        session = self.session
        connection = session.info.get(TRANSACTION_CONNECTION)
        if not self.database.is_postgres or connection is None or not session.in_transaction():
            return False
        if session.new or session.dirty or session.deleted:
            return False
        return connection.info.get(WROTE) is False

    def _end_unchanged(self):
        """End a transaction that changed nothing with COMMIT, for it the same as ROLLBACK:
        psycopg forgets its prepared statements on every ROLLBACK (and deallocates them in one
        more round trip), so pages that only read would have each query planned afresh. The
        unit of work still counts as not committed: its after-commit work is dropped and its
        outside side effects are undone."""
        self._after_commit = []
        try:
            self.session.commit()
        except Exception:
            self.session.rollback()
            raise
        finally:
            self._run_rollback_hooks()

    def rollback(self):
        """Undo the transaction, forget its after-commit work and undo what it did outside."""
        self._after_commit = []
        try:
            self.session.rollback()
        finally:
            self._run_rollback_hooks()

    def _run_rollback_hooks(self):
        hooks, self._on_rollback = self._on_rollback, []
        for hook in hooks:
            try:
                hook()
            except Exception:
                log.exception("clean-up after a rollback failed")

    def on_rollback(self, hook: Callable[[], None]):
        """Undo a side effect outside the database (a file written) unless this commits."""
        self._on_rollback.append(hook)

    def commit(self):
        self.session.commit()
        self._on_rollback = []
        hooks, self._after_commit = self._after_commit, []
        for hook in hooks:
            try:
                hook()
            except Exception:  # the relay re-dispatches whatever this did not hand over
                log.exception("after-commit dispatch failed; the relay will pick the work up")

    def after_commit(self, hook: Callable[[], None]):
        self._after_commit.append(hook)

    def among(self, column, values: Iterable) -> list:
        """Conditions "``column`` is one of ``values``", one per statement to run: on PostgreSQL
        a single array parameter (one plan and one round trip however many), on SQLite chunks
        below its limit of bound parameters. No condition when ``values`` is empty."""
        values = list(values)
        if not values:
            return []
        if self.database.is_postgres:
            return [column == any_(bindparam(None, values, type_=ARRAY(column.type)))]
        return [column.in_(values[start:start + SQLITE_CHUNK])
                for start in range(0, len(values), SQLITE_CHUNK)]

    def dispatch(self, notification_ids: Sequence[int], as_of: datetime | None = None):
        if notification_ids:
            ids = list(notification_ids)
            self.after_commit(lambda: self.database.dispatcher.send_notifications(ids, as_of))

    def wait_for_mail_in_flight(self, submission_id: int):
        """Wait until no worker is sending a mail to this submission, and let none claim one
        until this transaction ends (see ``MAIL_LOCKS``). A mail still on its way after
        ``MAIL_WAIT_SECONDS`` (a server that slow) is not waited for longer: the change goes
        ahead, and says so."""
        if not self.database.is_postgres:
            return
        savepoint = self.session.begin_nested()  # a lock timeout ends only the savepoint
        try:
            before = self.session.execute(_WAIT_FOR_MAIL_LOCK, {
                "submission_id": submission_id,
                "timeout": f"{round(MAIL_WAIT_SECONDS * 1000)}ms"}).scalar()
        except OperationalError as exc:
            savepoint.rollback()
            if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            log.warning("a mail to submission %s was still being sent after %s s: the change "
                        "goes ahead, and that mail may arrive after it", submission_id,
                        MAIL_WAIT_SECONDS)
            return
        self.session.execute(_SET_LOCK_TIMEOUT, {"timeout": before})
        savepoint.commit()

    def lock(self, name: str):
        """Serialise a use case across processes for the rest of this transaction."""
        if self.database.is_postgres:
            key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
            self.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        else:
            # SQLite transactions here start with BEGIN IMMEDIATE: the write lock is already held.
            self.session.execute(text("SELECT 1"))


# A worker holds a submission's mail lock, shared, from claiming a mail to it until that mail is
# recorded, and lets go of it every second to let a waiting change through (the mail then goes
# back unsent); a change that ends the submission's mails takes it exclusively for its
# transaction. So that change waits for a mail being sent, and no mail is claimed before the
# change commits: no mail leaves after it. PostgreSQL advisory locks in a key space of their own
# (two int4 keys: this constant and the submission's id); the worker's are session locks on its
# recorder's connection, which outlive its autocommit statements. SQLite has no such locks (its
# embedded default serves one process).
MAIL_LOCKS = 1380122625
MAIL_WAIT_SECONDS = 10.0
LOCK_NOT_AVAILABLE = "55P03"
# Waited for in the lock's queue, for at most MAIL_WAIT_SECONDS: a change waiting there keeps new
# claims off the submission (a shared lock is not granted past a waiting exclusive one), and a
# worker lets it through within a second (Recorder.refresh_mail_locks). The target list runs in
# order: the timeout in force is read before it is set for the wait.
_WAIT_FOR_MAIL_LOCK = text(
    "SELECT current_setting('lock_timeout'), set_config('lock_timeout', :timeout, true), "
    f"pg_advisory_xact_lock({MAIL_LOCKS}, CAST(:submission_id AS integer))")
_SET_LOCK_TIMEOUT = text("SELECT set_config('lock_timeout', :timeout, true)")
# Tried, never waited for: a worker must not wait on a transaction that may wait on it.
_HOLD_MAIL_LOCKS = text(
    f"SELECT id, submission_id, pg_try_advisory_lock_shared({MAIL_LOCKS}, submission_id) "
    "FROM notification WHERE id = ANY(CAST(:ids AS integer[])) AND needs_open_report "
    "AND submission_id IS NOT NULL")
_RELEASE_MAIL_LOCKS = text(
    f"SELECT count(pg_advisory_unlock_shared({MAIL_LOCKS}, submission_id)) "
    "FROM unnest(CAST(:submission_ids AS integer[])) AS submission_id")
_RELEASE_EVERY_LOCK = text("SELECT pg_advisory_unlock_all()")
# Let a waiting change through: each lock released and tried again at once; a change waiting in
# the lock's queue is granted it on the release, and the try then fails.
_REFRESH_MAIL_LOCKS = text(
    f"SELECT notification_id, pg_advisory_unlock_shared({MAIL_LOCKS}, submission_id), "
    f"pg_try_advisory_lock_shared({MAIL_LOCKS}, submission_id) "
    "FROM unnest(CAST(:ids AS integer[]), CAST(:submission_ids AS integer[])) "
    "AS held(notification_id, submission_id)")


def release_mail_lock(submission_id, release):
    """An expression that lets go of one mail lock when ``release`` is true, for a statement
    that records the mail (so the release costs no round trip of its own)."""
    return case((release, func.pg_advisory_unlock_shared(literal_column(str(MAIL_LOCKS)),
                                                         submission_id)))


class Recorder:
    """Records that are one statement each, committed on their own (autocommit) over one
    connection held for a block: no checkout, liveness ping, BEGIN and COMMIT per mail. On
    PostgreSQL only (``single_statements``); elsewhere records are units of work.

    Each statement is compiled once and runs as a prepared statement on the driver's cursor:
    SQLAlchemy's execution of a compiled statement cost as much CPU again as the driver's.

    A connection found dead is replaced and the statement tried once more, so a database
    restarted between two mails costs no record. ``retried`` tells whether the last statement
    had to be tried again: its first try may have committed before the reply was lost."""

    def __init__(self, database: Database, engine: Engine):
        self.engine = engine
        self.single_statements = database.is_postgres
        self.connection = None
        self.retried = False
        self._may_hold_locks = False

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Give the connection back, without a lock: session locks would outlive its checkout."""
        if self.connection is None:
            return
        if self._may_hold_locks:
            try:
                self.execute(_RELEASE_EVERY_LOCK, {})
            except Exception:
                log.warning("letting go of the mail locks failed: closing their connection",
                            exc_info=True)
                if self.connection is not None:
                    self.connection.invalidate()
            self._may_hold_locks = False
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def hold_mail_locks(self, notification_ids: Sequence[int]) -> tuple[dict[int, int], set[int]]:
        """Take the mail locks (``MAIL_LOCKS``) of the rows that need an open report: the rows
        held, each with its submission, and the rows whose submission is being changed now."""
        held, busy = {}, set()
        self._may_hold_locks = True
        for notification_id, submission_id, taken in self.execute(
                _HOLD_MAIL_LOCKS, {"ids": list(notification_ids)}, every_row=True):
            if taken:
                held[notification_id] = submission_id
            else:
                busy.add(notification_id)
        return held, busy

    def refresh_mail_locks(self, held: dict[int, int]) -> set[int]:
        """Let changes waiting for these locks (notification id -> submission id) through: the
        rows whose lock went to such a change, no longer held."""
        if not held:
            return set()
        rows = self.execute(_REFRESH_MAIL_LOCKS, {"ids": list(held),
                                                  "submission_ids": list(held.values())},
                            every_row=True)
        return {notification_id for notification_id, _, taken in rows if not taken}

    def release_mail_locks(self, submission_ids: Sequence[int]):
        """Let go of one mail lock per id (a submission held twice is named twice)."""
        if submission_ids:
            self.execute(_RELEASE_MAIL_LOCKS, {"submission_ids": list(submission_ids)})

    def execute(self, statement, parameters: dict, *, every_row: bool = False):
        """The statement's first row (a tuple), or None, or ``every_row``; committed."""
        self.retried = False
        dialect = self.engine.dialect
        prepared = _prepared(statement, dialect)
        values = prepared.values(parameters)
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = self.engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT")
            driver_connection = self.connection.connection.driver_connection
            try:
                return self._run(driver_connection, prepared.sql, values, every_row)
            except dialect.loaded_dbapi.Error as exc:
                if not dialect.is_disconnect(exc, driver_connection, None) or attempt == 2:
                    raise
                log.warning("the database connection was lost between two records: "
                            "recording again over a new one")
                self.connection.invalidate()
                self.connection.close()
                self.connection = None
                self.retried = True
        raise AssertionError("unreachable")

    @staticmethod
    def _run(driver_connection, sql: str, values: dict, every_row: bool):
        with driver_connection.cursor() as cursor:
            cursor.execute(sql, values, prepare=True)
            if cursor.description is None:
                return None
            return cursor.fetchall() if every_row else cursor.fetchone()


@lru_cache(maxsize=32)
def _prepared(statement, dialect) -> "_PreparedStatement":
    """Compiled once per process (a recorder lives for one batch); the hot path's statements
    are module constants, compared by identity."""
    return _PreparedStatement(statement, dialect)


class _PreparedStatement:
    """A statement compiled once for a dialect, and its parameters as the driver takes them."""

    def __init__(self, statement, dialect):
        self.compiled = statement.compile(dialect=dialect)
        self.sql = str(self.compiled)
        self.processors = {
            name: processor for bind, name in self.compiled.bind_names.items()
            if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect))}

    def values(self, parameters: dict) -> dict:
        values = self.compiled.construct_params(parameters)
        for name, process in self.processors.items():
            values[name] = process(values[name])
        return values


class SharedReads:
    """Single reads that share one connection until ``close()``: on PostgreSQL the reads of one
    web request (the signed-in person, the page's version) take one pool checkout and liveness
    check instead of one each, and each runs on its own (autocommit), without the BEGIN and
    ROLLBACK round trips of a unit of work. Never for writes: they would take effect at once.
    Each statement sees its own moment, so each read is a single query. Elsewhere each read is
    an ordinary unit of work (on SQLite a read transaction kept open would hold back the
    request's own writes)."""

    def __init__(self, database: Database):
        self.database = database
        self._session: Session | None = None

    def __call__(self) -> UnitOfWork:
        """A unit of work for one read; never for writes."""
        if not self.database.is_postgres:
            return self.database.unit_of_work()
        if self._session is None:
            self._session = self.database._reading_sessions()()
        return _SharedRead(self.database, self._session)

    def close(self):
        if self._session is not None:
            self._session.close()
            self._session = None


class _SharedRead(UnitOfWork):
    def __init__(self, database: Database, session: Session):
        super().__init__(database)
        self.session = session

    def __enter__(self) -> "UnitOfWork":
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is not None:  # a failed read gives its connection back (a lost one is replaced)
            self.session.rollback()
