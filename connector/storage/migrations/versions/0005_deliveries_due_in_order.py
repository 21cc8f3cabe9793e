"""Due deliveries indexed in the order workers claim them (due time, then number): a claim reads the first
rows of the index instead of sorting every due delivery, which a backlog of thousands made the costliest part
of a worker's turn. The index it replaces was the first two columns of this one. On PostgreSQL, deliveries'
pages keep room for claims to update rows in place.

Revision ID: 0005
Revises: 0004
Created: 2026-11-30
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None
# An index, which no query names: the code at 0002 runs the same on either.
readable_by = "0002"


def upgrade() -> None:
    # Made before the old one goes, so claims made meanwhile have an index to use.
    op.create_index("deliveries_due_in_order", "deliveries", ["status", "next_attempt_at", "seq"])
    op.drop_index("deliveries_due", table_name="deliveries")
    if op.get_bind().dialect.name == "postgresql":
        # Room left in each page for a row's next version: a claim (lease and lease_until, in no index) then
        # writes it beside the old one and touches none of the five indexes. Pages written from now on.
        op.execute("ALTER TABLE deliveries SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE deliveries RESET (fillfactor)")
    op.create_index("deliveries_due", "deliveries", ["status", "next_attempt_at"])
    op.drop_index("deliveries_due_in_order", table_name="deliveries")
