"""Configuration versions: every config applied to a server, kept as it was written.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "config_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("config_version", sa.String(32), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("source", sa.String(400), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("client", sa.String(200), nullable=True),
        sa.Column("restores", sa.Integer, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_config_versions_hash", "config_versions", ["config_version"])


def downgrade() -> None:
    op.drop_index("ix_config_versions_hash", "config_versions")
    op.drop_table("config_versions")
