"""dashboard indexes: the cycle overview's counts read from indexes only, the burn-up and the
per-rung figures without scanning every event or ledger row, the partner table's sorts along
an index, bouncing contacts without a scan

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    op.drop_index('ix_submission_cycle_state', table_name='submission')
    op.create_index('ix_submission_cycle_state', 'submission',
                    ['cycle_id', 'state', 'escalation_level', 'non_reporting', 'due_on'])
    op.create_index('ix_submission_cycle_level', 'submission',
                    ['cycle_id', 'escalation_level', 'id'])
    op.create_index('ix_submission_cycle_due', 'submission', ['cycle_id', 'due_on', 'id'])
    op.create_index('ix_event_cycle_kind', 'event', ['cycle_id', 'kind', 'submission_id', 'at'])
    op.drop_index('ix_notification_cycle_status', table_name='notification')
    op.create_index('ix_notification_cycle_status', 'notification',
                    ['cycle_id', 'status', 'rung'])
    op.create_index('ix_contact_bounced', 'contact', ['bounced_at'],
                    sqlite_where=sa.text('bounced_at IS NOT NULL'),
                    postgresql_where=sa.text('bounced_at IS NOT NULL'))


def downgrade():
    op.drop_index('ix_contact_bounced', table_name='contact')
    op.drop_index('ix_notification_cycle_status', table_name='notification')
    op.create_index('ix_notification_cycle_status', 'notification', ['cycle_id', 'status'])
    op.drop_index('ix_event_cycle_kind', table_name='event')
    op.drop_index('ix_submission_cycle_due', table_name='submission')
    op.drop_index('ix_submission_cycle_level', table_name='submission')
    op.drop_index('ix_submission_cycle_state', table_name='submission')
    op.create_index('ix_submission_cycle_state', 'submission', ['cycle_id', 'state'])
