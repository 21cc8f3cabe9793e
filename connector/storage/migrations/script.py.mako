"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Created: ${create_date}
"""

from alembic import op
import sqlalchemy as sa
${imports if imports else ""}

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None
# The oldest head revision whose code still works on the schema this leaves: the previous migration's
# value for an expand (a new table, a nullable column, an index), this revision for a contract (a column or
# table dropped or renamed, NOT NULL on an existing column), since the previous release may still be serving
# while this one migrates.
readable_by = ${repr(up_revision)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
