"""Each request's output contract verdict (passed, repaired, failed).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("validation", sa.String(16)))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("validation")
