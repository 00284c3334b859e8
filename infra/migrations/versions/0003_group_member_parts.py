"""group member parts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 13:30:26.876974
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():

    op.create_table('member_part',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('submission_id', sa.Integer(), nullable=False),
    sa.Column('partner_id', sa.Integer(), nullable=False),
    sa.Column('answers', sa.JSON(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['partner_id'], ['partner.id'], ),
    sa.ForeignKeyConstraint(['submission_id'], ['submission.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('submission_id', 'partner_id')
    )
    with op.batch_alter_table('member_part', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_member_part_submission_id'), ['submission_id'], unique=False)

    with op.batch_alter_table('access_token', schema=None) as batch_op:
        batch_op.add_column(sa.Column('member_part_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_access_token_member_part', 'member_part', ['member_part_id'], ['id'])

    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.add_column(sa.Column('member_part_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_notification_member_part', 'member_part', ['member_part_id'], ['id'])




def downgrade():

    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_constraint('fk_notification_member_part', type_='foreignkey')
        batch_op.drop_column('member_part_id')

    with op.batch_alter_table('access_token', schema=None) as batch_op:
        batch_op.drop_constraint('fk_access_token_member_part', type_='foreignkey')
        batch_op.drop_column('member_part_id')

    with op.batch_alter_table('member_part', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_member_part_submission_id'))

    op.drop_table('member_part')

