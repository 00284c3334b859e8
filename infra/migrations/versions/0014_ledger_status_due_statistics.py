"""statistics on the ledger's status and due instant together (PostgreSQL): the planner took
them for independent and expected some 90,000 of 900,000 rows to be planned and due when 1,000
were (most rows long due are sent, and a rung's rows share their due instant), so the sweep's read
ran in parallel workers and took four times as long; with the statistics it expects about 1,000

Revision ID: 0014
Revises: 0013
"""
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE STATISTICS notification_status_due (mcv) ON status, due_at "
                   "FROM notification")
        op.execute("ANALYZE notification")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP STATISTICS notification_status_due")
