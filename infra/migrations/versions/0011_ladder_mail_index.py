"""an index of the ladder mails that left or are leaving, so that the sweep's minimum gap
between two mails to a partner reads only those, not every ledger row of the due submissions

Revision ID: 0011
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

LADDER_MAIL_OUT = ("needs_open_report AND audience <> 'coordinators' "
                   "AND status IN ('queued', 'sending', 'sent')")


def upgrade():
    op.create_index('ix_notification_ladder_out', 'notification',
                    ['submission_id', 'member_part_id'],
                    sqlite_where=sa.text(LADDER_MAIL_OUT),
                    postgresql_where=sa.text(LADDER_MAIL_OUT))


def downgrade():
    op.drop_index('ix_notification_ladder_out', table_name='notification')
