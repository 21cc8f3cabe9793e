"""The campaigns each account's sends made, and when AllMySMS was last read for each account: receipts and
replies are read from AllMySMS when a platform polls, for accounts whose inbound URL AllMySMS does not call.

Revision ID: 0004
Revises: 0003
Created: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None
# New tables, which no earlier code looks at: an expand, so the value 0003 declared still holds.
readable_by = "0002"


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.String(length=64), nullable=False),
        sa.Column("sent_at", sa.Float(), nullable=False),
        sa.Column("read_at", sa.Float(), nullable=True),
        sa.Column("settled", sa.Integer(), nullable=False),
        sa.Column("messages", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("account_id", "campaign_id"),
    )
    op.create_index("campaigns_by_account_age", "campaigns", ["account_id", "sent_at"])
    op.create_table(
        "upstream_reads",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("read_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("account_id", "source"),
    )


def downgrade() -> None:
    op.drop_table("upstream_reads")
    op.drop_index("campaigns_by_account_age", table_name="campaigns")
    op.drop_table("campaigns")
