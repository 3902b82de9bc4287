"""Shadow calls in the ledger: the request each one copied, and whether it answered the same.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("shadow_of", sa.String(128)))
        batch.add_column(sa.Column("shadow_match", sa.Boolean))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("shadow_match")
        batch.drop_column("shadow_of")
