"""The version of the route's prompt that was put before a request.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("prompt_version", sa.String(128)))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("prompt_version")
