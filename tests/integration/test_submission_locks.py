"""A submission's row is locked once per transaction, however many steps of a use case ask."""
from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import event, text

from tests.integration.conftest import seed_programme
from tests.integration.test_cycle_engine import open_2027, submission_ids
from workflow.submissions import load_submission


@contextmanager
def locking_statements(services):
    seen = []

    def count(conn, cursor, statement, parameters, context, many):
        if statement.lstrip().upper().startswith("SELECT") and (
                "FOR UPDATE" in statement.upper() or "FROM submission" in statement):
            seen.append(statement)

    event.listen(services.database.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(services.database.engine, "before_cursor_execute", count)


def test_a_row_locked_in_this_transaction_is_not_asked_for_again_but_is_in_the_next(services):
    seed_programme(services, partners=1)
    open_2027(services)
    [submission_id] = submission_ids(services)
    with locking_statements(services) as seen, services.database.unit_of_work() as uow:
        first = load_submission(uow, submission_id, for_update=True)
        again = load_submission(uow, submission_id, for_update=True)
        assert again is first and len(seen) == 1
        uow.commit()  # the lock ends with the transaction: the next one asks again
        uow.session.execute(text("SELECT 1"))  # (the next transaction has begun)
        load_submission(uow, submission_id, for_update=True)
        assert len(seen) == 2
