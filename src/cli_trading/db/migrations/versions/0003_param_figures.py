"""parameter proposals keep their walk-forward figures (in-sample, out-of-sample, the current
set's out-of-sample), so an operator approving one sees what it is worth

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("params", sa.Column("figures", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("params", "figures")
