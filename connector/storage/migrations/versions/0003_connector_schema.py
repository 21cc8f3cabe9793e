"""The database says which versions can run on it, in a table of our own: an older version cannot read a
newer version's migration files, only what the database holds. connector/storage/schema.py writes its one row.

Revision ID: 0003
Revises: 0002
Created: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None
# A new table, which the code at 0002 never looks at.
readable_by = "0002"


def upgrade() -> None:
    op.create_table(
        "connector_schema",
        sa.Column("revision", sa.String(length=32), nullable=False),
        sa.Column("readable_by", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("revision"),
    )


def downgrade() -> None:
    op.drop_table("connector_schema")
