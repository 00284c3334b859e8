"""delivery: fencing claims, mails about an owed report, refused recipients, bouncing contacts,
the outbox's pause

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

LADDER_MAILS = ("invitation", "reminder", "overdue_reminder", "escalation_head",
                "non_reporting_notice", "member_invitation")


def upgrade():
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.add_column(sa.Column('needs_open_report', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('claim_token', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('takeovers', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('refused', sa.JSON(), nullable=True))
    notification = sa.table('notification', sa.column('needs_open_report', sa.Boolean()),
                            sa.column('email', sa.String()), sa.column('submission_id', sa.Integer()))
    op.execute(notification.update()
               .where(notification.c.email.in_(LADDER_MAILS),
                      notification.c.submission_id.isnot(None))
               .values(needs_open_report=True))
    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bounced_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('bounce_reason', sa.String(length=500), nullable=True))
    op.create_table('outbox',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('paused_until', sa.DateTime(timezone=True), nullable=True),
                    sa.Column('paused_since', sa.DateTime(timezone=True), nullable=True),
                    sa.Column('failures', sa.Integer(), nullable=False),
                    sa.Column('reason', sa.Text(), nullable=True),
                    sa.PrimaryKeyConstraint('id'))
    outbox = sa.table('outbox', sa.column('id', sa.Integer()), sa.column('failures', sa.Integer()))
    op.bulk_insert(outbox, [{'id': 1, 'failures': 0}])  # the one row every worker locks


def downgrade():
    op.drop_table('outbox')
    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.drop_column('bounce_reason')
        batch_op.drop_column('bounced_at')
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_column('refused')
        batch_op.drop_column('takeovers')
        batch_op.drop_column('claim_token')
        batch_op.drop_column('needs_open_report')
