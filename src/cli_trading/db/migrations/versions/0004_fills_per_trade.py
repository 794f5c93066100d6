"""fills: one row per trade (a partial fill is a row of its own), unique by (order_id, trade_id)
instead of order_id; the rows already there are their order's one fill (trade_id "order")

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# SQLite names no unique constraint: batch mode reflects it under this convention's name
_CONVENTION = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _order_id_unique() -> str:
    for uc in sa.inspect(op.get_bind()).get_unique_constraints("fills"):
        if uc["column_names"] == ["order_id"]:
            return uc["name"] or "uq_fills_order_id"
    return "uq_fills_order_id"


def upgrade() -> None:
    name = _order_id_unique()
    with op.batch_alter_table("fills", naming_convention=_CONVENTION) as batch_op:
        batch_op.add_column(sa.Column("trade_id", sa.String(length=64), nullable=False, server_default="order"))
        batch_op.drop_constraint(name, type_="unique")
        batch_op.create_index("ux_fills_trade", ["order_id", "trade_id"], unique=True)


def downgrade() -> None:
    # back to one row per order: only possible while no order has more than one fill row
    with op.batch_alter_table("fills", naming_convention=_CONVENTION) as batch_op:
        batch_op.drop_index("ux_fills_trade")
        batch_op.drop_column("trade_id")
        batch_op.create_unique_constraint("uq_fills_order_id", ["order_id"])
