"""live trading: exchange orders, their trades (partial fills), the balance baseline

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from cli_trading.db.models import Money, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exchange_orders",
        sa.Column("order_id", sa.String(length=90), nullable=False),
        sa.Column("symbol", sa.String(length=20), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("type", sa.String(length=10), nullable=False),
        sa.Column("qty", Money(), nullable=False),
        sa.Column("limit_price", Money(), nullable=True),
        sa.Column("time_in_force", sa.String(length=4), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("exchange_order_id", sa.String(length=64), nullable=True),
        sa.Column("filled", Money(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_index("ix_exchange_orders_status", "exchange_orders", ["status"])
    op.create_table(
        "exchange_fills",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.String(length=90), nullable=False),
        sa.Column("trade_id", sa.String(length=64), nullable=False),
        sa.Column("ts", UTCDateTime(timezone=True), nullable=False),
        sa.Column("symbol", sa.String(length=20), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("qty", Money(), nullable=False),
        sa.Column("price", Money(), nullable=False),
        sa.Column("fee_charged", Money(), nullable=False),
        sa.Column("fee_currency", sa.String(length=16), nullable=True),
        sa.Column("fee_quote", Money(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_exchange_fills_order_id", "exchange_fills", ["order_id"])
    op.create_index("ux_exchange_fills_trade", "exchange_fills", ["order_id", "trade_id"], unique=True)
    op.create_table(
        "exchange_baseline",
        sa.Column("asset", sa.String(length=16), nullable=False),
        sa.Column("amount", Money(), nullable=False),
        sa.Column("set_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("asset"),
    )


def downgrade() -> None:
    op.drop_table("exchange_baseline")
    op.drop_index("ux_exchange_fills_trade", table_name="exchange_fills")
    op.drop_index("ix_exchange_fills_order_id", table_name="exchange_fills")
    op.drop_table("exchange_fills")
    op.drop_index("ix_exchange_orders_status", table_name="exchange_orders")
    op.drop_table("exchange_orders")
