"""A cycle's saved state (reconciler_cycle_states), so a cycle resumes where it stopped.

Created only where absent: a development store made by create_all after the table was added
already has it.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TABLE = "reconciler_cycle_states"


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table(_TABLE):
        return
    op.create_table(
        _TABLE,
        sa.Column("target", sa.String(255), primary_key=True),
        sa.Column("correlation_id", sa.String(255), primary_key=True),
        sa.Column("state_json", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table(_TABLE)
