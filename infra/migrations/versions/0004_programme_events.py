"""programme-level events (e.g. the coordinators changed)

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('programme_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_event_programme', 'programme', ['programme_id'], ['id'])
        batch_op.alter_column('cycle_id', existing_type=sa.Integer(), nullable=True)
        batch_op.create_index('ix_event_programme', ['programme_id', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.drop_index('ix_event_programme')
        batch_op.alter_column('cycle_id', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_constraint('fk_event_programme', type_='foreignkey')
        batch_op.drop_column('programme_id')
