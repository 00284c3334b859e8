"""coordinators' dashboard: reminders paused by a coordinator (one partner or the whole cycle),
and the copy of each mail as it was sent (subject and text, the personal link blanked out)

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('submission', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reminders_paused', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    with op.batch_alter_table('cycle', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reminders_paused', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sent_subject', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('sent_text', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('sent_to', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_column('sent_to')
        batch_op.drop_column('sent_text')
        batch_op.drop_column('sent_subject')
    with op.batch_alter_table('cycle', schema=None) as batch_op:
        batch_op.drop_column('reminders_paused')
    with op.batch_alter_table('submission', schema=None) as batch_op:
        batch_op.drop_column('reminders_paused')
