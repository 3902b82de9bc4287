"""Whether a request's tokens (and so its cost) were estimated: the provider reported none.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("usage_estimated", sa.Boolean))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("usage_estimated")
