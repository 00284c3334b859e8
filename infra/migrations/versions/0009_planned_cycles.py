"""planned cycles: a cycle can be set up (state 'planned') before it opens

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

CYCLE_STATES = ('planned', 'open', 'closed')


def _state_check(batch_op, states):
    # SQLite cannot alter a constraint: the batch copies the table with the new one.
    batch_op.drop_constraint('cycle_state', type_='check')
    batch_op.create_check_constraint(
        'cycle_state', sa.column('state').in_(states))


def upgrade():
    with op.batch_alter_table('cycle', schema=None) as batch_op:
        _state_check(batch_op, CYCLE_STATES)


def downgrade():
    # A planned cycle has no submissions or mails yet: it goes, its events stay (programme-wide).
    op.execute("UPDATE event SET cycle_id = NULL WHERE cycle_id IN "
               "(SELECT id FROM cycle WHERE state = 'planned')")
    op.execute("DELETE FROM cycle WHERE state = 'planned'")
    with op.batch_alter_table('cycle', schema=None) as batch_op:
        _state_check(batch_op, CYCLE_STATES[1:])
