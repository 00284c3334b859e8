"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 12:57:20.047877
"""
from alembic import op
import sqlalchemy as sa



revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():

    op.create_table('programme',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('slug', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('policy', sa.JSON(), nullable=False),
    sa.Column('coordinator_emails', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('slug')
    )
    op.create_table('cycle',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('opens_on', sa.Date(), nullable=False),
    sa.Column('due_on', sa.Date(), nullable=False),
    sa.Column('state', sa.Enum('open', 'closed', name='cycle_state', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('due_on > opens_on', name='due_after_opening'),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('programme_id', 'year')
    )
    op.create_table('partner',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('kind', sa.Enum('kommune', 'kreis', 'behoerde', 'polizei', 'jobcenter', 'verband', 'unternehmen', 'kooperation', name='partner_kind', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('joined_on', sa.Date(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('employees', sa.Integer(), nullable=True),
    sa.Column('group_id', sa.Integer(), nullable=True),
    sa.CheckConstraint('employees IS NULL OR employees >= 0', name='employees_not_negative'),
    sa.CheckConstraint('group_id IS NULL OR group_id <> id', name='not_own_group'),
    sa.ForeignKeyConstraint(['group_id'], ['partner.id'], ),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('programme_id', 'name')
    )
    with op.batch_alter_table('partner', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_partner_group_id'), ['group_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_partner_programme_id'), ['programme_id'], unique=False)

    op.create_table('contact',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('partner_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('role', sa.Enum('reporting', 'deputy', 'head', name='contact_role', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('language', sa.String(length=2), nullable=False),
    sa.CheckConstraint("language IN ('de', 'en')", name='language_known'),
    sa.ForeignKeyConstraint(['partner_id'], ['partner.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('partner_id', 'role', 'email')
    )
    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contact_partner_id'), ['partner_id'], unique=False)

    op.create_table('submission',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('cycle_id', sa.Integer(), nullable=False),
    sa.Column('partner_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.Enum('invited', 'opened', 'draft', 'submitted', 'returned', 'accepted', 'exempted', name='submission_state', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('due_on', sa.Date(), nullable=False),
    sa.Column('escalation_level', sa.Integer(), nullable=False),
    sa.Column('non_reporting', sa.Boolean(), nullable=False),
    sa.Column('answers', sa.JSON(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('escalation_level BETWEEN 0 AND 9', name='escalation_level_range'),
    sa.ForeignKeyConstraint(['cycle_id'], ['cycle.id'], ),
    sa.ForeignKeyConstraint(['partner_id'], ['partner.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('cycle_id', 'partner_id')
    )
    with op.batch_alter_table('submission', schema=None) as batch_op:
        batch_op.create_index('ix_submission_cycle_state', ['cycle_id', 'state'], unique=False)
        batch_op.create_index(batch_op.f('ix_submission_partner_id'), ['partner_id'], unique=False)

    op.create_table('event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('cycle_id', sa.Integer(), nullable=False),
    sa.Column('submission_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.Enum('cycle_opened', 'invited', 'opened', 'draft_saved', 'submitted', 'returned', 'accepted', 'exempted', 'exemption_revoked', 'extended', 'escalated', 'notification_sent', 'notification_skipped', 'notification_cancelled', 'notification_failed', 'flagged_non_reporting', name='event_kind', native_enum=False, length=32), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['cycle_id'], ['cycle.id'], ),
    sa.ForeignKeyConstraint(['submission_id'], ['submission.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.create_index('ix_event_cycle_at', ['cycle_id', 'at'], unique=False)
        batch_op.create_index('ix_event_submission', ['submission_id', 'id'], unique=False)

    op.create_table('notification',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('cycle_id', sa.Integer(), nullable=False),
    sa.Column('submission_id', sa.Integer(), nullable=True),
    sa.Column('dedupe_key', sa.String(length=200), nullable=False),
    sa.Column('rung', sa.String(length=64), nullable=False),
    sa.Column('email', sa.String(length=64), nullable=False),
    sa.Column('audience', sa.Enum('contact', 'contact_and_deputy', 'head', 'coordinators', name='audience', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('escalation_level', sa.Integer(), nullable=False),
    sa.Column('flags_non_reporting', sa.Boolean(), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.Enum('planned', 'queued', 'sending', 'sent', 'skipped', 'cancelled', 'failed', name='notification_status', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('not_before', sa.DateTime(timezone=True), nullable=True),
    sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('message_id', sa.String(length=300), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('attempts >= 0', name='attempts_not_negative'),
    sa.ForeignKeyConstraint(['cycle_id'], ['cycle.id'], ),
    sa.ForeignKeyConstraint(['submission_id'], ['submission.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('dedupe_key')
    )
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.create_index('ix_notification_cycle_status', ['cycle_id', 'status'], unique=False)
        batch_op.create_index('ix_notification_outbox', ['not_before'], unique=False, sqlite_where=sa.text("status IN ('queued', 'sending')"), postgresql_where=sa.text("status IN ('queued', 'sending')"))
        batch_op.create_index('ix_notification_planned_due', ['due_at'], unique=False, sqlite_where=sa.text("status = 'planned'"), postgresql_where=sa.text("status = 'planned'"))
        batch_op.create_index('ix_notification_submission', ['submission_id'], unique=False)

    op.create_table('access_token',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('submission_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('notification_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['notification_id'], ['notification.id'], ),
    sa.ForeignKeyConstraint(['submission_id'], ['submission.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    with op.batch_alter_table('access_token', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_access_token_submission_id'), ['submission_id'], unique=False)




def downgrade():

    with op.batch_alter_table('access_token', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_access_token_submission_id'))

    op.drop_table('access_token')
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_index('ix_notification_submission')
        batch_op.drop_index('ix_notification_planned_due', sqlite_where=sa.text("status = 'planned'"), postgresql_where=sa.text("status = 'planned'"))
        batch_op.drop_index('ix_notification_outbox', sqlite_where=sa.text("status IN ('queued', 'sending')"), postgresql_where=sa.text("status IN ('queued', 'sending')"))
        batch_op.drop_index('ix_notification_cycle_status')

    op.drop_table('notification')
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.drop_index('ix_event_submission')
        batch_op.drop_index('ix_event_cycle_at')

    op.drop_table('event')
    with op.batch_alter_table('submission', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_submission_partner_id'))
        batch_op.drop_index('ix_submission_cycle_state')

    op.drop_table('submission')
    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contact_partner_id'))

    op.drop_table('contact')
    with op.batch_alter_table('partner', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_partner_programme_id'))
        batch_op.drop_index(batch_op.f('ix_partner_group_id'))

    op.drop_table('partner')
    op.drop_table('cycle')
    op.drop_table('programme')

