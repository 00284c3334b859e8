"""a ledger row about a submission refers to (submission, cycle) in one foreign key instead of
two, so planning a rung of 20,000 checks each row once; rows about the whole cycle (no
submission) keep their cycle checked by triggers, which also keep such a cycle from being deleted

On SQLite the triggers name both tables: a later migration that recreates notification or
cycle (a batch migration) must drop all of them first and create them again afterwards, as the
downgrade below does (SQLite refuses to rename a table into place while a trigger names a table
that is gone).

Revision ID: 0012
Revises: 0011
"""
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

# The names SQLite's unnamed foreign keys get while its table is recreated.
UNNAMED = {"fk": "fk_%(table_name)s_%(column_0_name)s"}

POSTGRESQL_TRIGGERS = [
    """CREATE FUNCTION notification_notice_cycle_exists() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM cycle WHERE id = NEW.cycle_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE foreign_key_violation USING MESSAGE = format(
            'notification %s refers to cycle %s, which does not exist', NEW.id, NEW.cycle_id);
    END IF;
    RETURN NEW;
END $$""",
    """CREATE TRIGGER notification_notice_cycle_exists
BEFORE INSERT OR UPDATE OF cycle_id, submission_id ON notification
FOR EACH ROW WHEN (NEW.submission_id IS NULL)
EXECUTE FUNCTION notification_notice_cycle_exists()""",
    """CREATE FUNCTION cycle_keeps_its_notices() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM notification WHERE cycle_id = OLD.id) THEN
        RAISE foreign_key_violation USING MESSAGE = format(
            'cycle %s still has ledger rows', OLD.id);
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END $$""",
    """CREATE TRIGGER cycle_keeps_its_notices BEFORE DELETE ON cycle
FOR EACH ROW EXECUTE FUNCTION cycle_keeps_its_notices()""",
    """CREATE TRIGGER cycle_keeps_its_notices_id BEFORE UPDATE OF id ON cycle
FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION cycle_keeps_its_notices()""",
]

SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER notification_notice_cycle_exists_{name}
BEFORE {event} ON notification
WHEN NEW.submission_id IS NULL AND NOT EXISTS (SELECT 1 FROM cycle WHERE id = NEW.cycle_id)
BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed'); END"""
    for name, event in (("insert", "INSERT"), ("update", "UPDATE OF cycle_id, submission_id"))
] + [
    """CREATE TRIGGER cycle_keeps_its_notices BEFORE DELETE ON cycle
WHEN EXISTS (SELECT 1 FROM notification WHERE cycle_id = OLD.id)
BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed'); END""",
    """CREATE TRIGGER cycle_keeps_its_notices_id BEFORE UPDATE OF id ON cycle
WHEN OLD.id <> NEW.id AND EXISTS (SELECT 1 FROM notification WHERE cycle_id = OLD.id)
BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed'); END""",
]


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade():
    op.create_index('ix_submission_id_cycle', 'submission', ['id', 'cycle_id'], unique=True)
    if _sqlite():
        with op.batch_alter_table('notification', naming_convention=UNNAMED,
                                  recreate="always") as batch_op:
            batch_op.drop_constraint('fk_notification_cycle_id', type_='foreignkey')
            batch_op.drop_constraint('fk_notification_submission_id', type_='foreignkey')
            batch_op.create_foreign_key('fk_notification_submission_cycle', 'submission',
                                        ['submission_id', 'cycle_id'], ['id', 'cycle_id'])
        triggers = SQLITE_TRIGGERS
    else:
        op.drop_constraint('notification_cycle_id_fkey', 'notification', type_='foreignkey')
        op.drop_constraint('notification_submission_id_fkey', 'notification', type_='foreignkey')
        op.create_foreign_key('fk_notification_submission_cycle', 'notification', 'submission',
                              ['submission_id', 'cycle_id'], ['id', 'cycle_id'])
        triggers = POSTGRESQL_TRIGGERS
    for statement in triggers:
        op.execute(statement)


def downgrade():
    if _sqlite():
        for name in ("notification_notice_cycle_exists_insert",
                     "notification_notice_cycle_exists_update", "cycle_keeps_its_notices",
                     "cycle_keeps_its_notices_id"):
            op.execute(f"DROP TRIGGER {name}")
        with op.batch_alter_table('notification', recreate="always") as batch_op:
            batch_op.drop_constraint('fk_notification_submission_cycle', type_='foreignkey')
            # Named now (a batch migration cannot add an unnamed one); they act as before.
            batch_op.create_foreign_key('fk_notification_cycle_id', 'cycle', ['cycle_id'], ['id'])
            batch_op.create_foreign_key('fk_notification_submission_id', 'submission',
                                        ['submission_id'], ['id'])
    else:
        op.execute("DROP TRIGGER cycle_keeps_its_notices_id ON cycle")
        op.execute("DROP TRIGGER cycle_keeps_its_notices ON cycle")
        op.execute("DROP FUNCTION cycle_keeps_its_notices()")
        op.execute("DROP TRIGGER notification_notice_cycle_exists ON notification")
        op.execute("DROP FUNCTION notification_notice_cycle_exists()")
        op.drop_constraint('fk_notification_submission_cycle', 'notification', type_='foreignkey')
        op.create_foreign_key('notification_cycle_id_fkey', 'notification', 'cycle',
                              ['cycle_id'], ['id'])
        op.create_foreign_key('notification_submission_id_fkey', 'notification', 'submission',
                              ['submission_id'], ['id'])
    op.drop_index('ix_submission_id_cycle', table_name='submission')
