"""the sweep hands due ledger rows to the workers by writing a narrow hand-over row each,
instead of moving the ledger rows to 'queued' (an update of every due row with all the ledger's
indexes): rows queued by a sweep before this migration stay queued and are sent as before

Revision ID: 0013
Revises: 0012
"""
from alembic import op
import sqlalchemy as sa

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'handover',
        sa.Column('notification_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('handed_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('notification_id'))


def downgrade():
    # Rows handed over but not yet claimed go back to the queue they would have been in.
    op.execute("UPDATE notification SET status = 'queued', dispatched_at = NULL "
               "WHERE status = 'planned' AND id IN (SELECT notification_id FROM handover)")
    op.drop_table('handover')
