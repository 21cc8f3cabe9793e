"""Idempotency keys name the process running their first call, so that a retry finding that process gone
can answer at once instead of waiting for the key to go stale.

Revision ID: 0002
Revises: 0001
Created: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None
# A nullable column: the code at 0001 names the columns it writes, and never reads this one.
readable_by = "0001"


def upgrade() -> None:
    op.add_column("idempotency_keys", sa.Column("owner", sa.String(length=120), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as table:
        table.drop_column("owner")
