"""The model version and the admission queue wait of each request, and user feedback.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("model_version", sa.String(256)))
        batch.add_column(sa.Column("queue_ms", sa.Float))
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(32)),
        sa.Column("route", sa.String(256)),
        sa.Column("model_version", sa.String(256)),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("correction", sa.Text),
        sa.Column("comment", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_feedback_request_id", "feedback", ["request_id"])
    op.create_index("ix_feedback_route_created_at", "feedback", ["route", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_feedback_route_created_at", table_name="feedback")
    op.drop_index("ix_feedback_request_id", table_name="feedback")
    op.drop_table("feedback")
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("queue_ms")
        batch.drop_column("model_version")
