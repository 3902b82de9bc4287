"""What each request's input guards did (kinds and counts, never the values).

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("guards", sa.String(200)))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("guards")
