"""usage-based billing: meters, metered plans, feature limits, usage events and aggregates

Revision ID: 0008_usage
Revises: 0007
Create Date: 2026-12-03 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0008_usage'
down_revision = '0007'
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'meters',
        sa.Column('id', sa.String(), primary_key=True),
        sa.Column('name', sa.String(), nullable=False),
        sa.Column('event_name', sa.String(), nullable=False),
        sa.Column('aggregation', sa.String(), nullable=False),
        sa.Column('value_property', sa.String(), nullable=True),
        sa.Column('unique_property', sa.String(), nullable=True),
        sa.Column('created_at', _TZ, nullable=False),
    )
    op.create_index('ix_meters_event_name', 'meters', ['event_name'])
    op.add_column('plans', sa.Column('usage_type', sa.String(), server_default='licensed', nullable=False))
    op.add_column('plans', sa.Column('meter_id', sa.String(), nullable=True))
    op.add_column('plans', sa.Column('package_size', sa.BigInteger(), server_default='1', nullable=False))
    op.create_table(
        'plan_feature_limits',
        sa.Column('plan_id', sa.String(), primary_key=True),
        sa.Column('feature', sa.String(), primary_key=True),
        sa.Column('meter_id', sa.String(), nullable=False),
        sa.Column('usage_limit', sa.BigInteger(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
    )
    op.create_index('ix_plan_feature_limits_meter_id', 'plan_feature_limits', ['meter_id'])
    op.create_table(
        'usage_events',
        sa.Column('id', sa.String(), primary_key=True),
        sa.Column('customer_id', sa.String(), nullable=False),
        sa.Column('transaction_id', sa.String(), nullable=False),
        sa.Column('event_name', sa.String(), nullable=False),
        sa.Column('timestamp', _TZ, nullable=False),
        sa.Column('properties', sa.JSON(), nullable=False),
        sa.Column('created_at', _TZ, nullable=False),
        sa.UniqueConstraint('customer_id', 'transaction_id'),
    )
    op.create_table(
        'usage_aggregates',
        sa.Column('subscription_id', sa.String(), primary_key=True),
        sa.Column('meter_id', sa.String(), primary_key=True),
        sa.Column('period_start', _TZ, primary_key=True),
        sa.Column('period_end', _TZ, nullable=False),
        sa.Column('customer_id', sa.String(), nullable=False),
        sa.Column('aggregation', sa.String(), nullable=False),
        sa.Column('quantity', sa.Numeric(), nullable=False),
        sa.Column('events', sa.BigInteger(), nullable=False),
        sa.Column('last_at', _TZ, nullable=True),
        sa.Column('last_transaction', sa.String(), nullable=True),
        sa.Column('invoice_id', sa.String(), nullable=True),
        sa.Column('closed_at', _TZ, nullable=True),
        sa.Column('updated_at', _TZ, nullable=False),
    )
    op.create_index('ix_usage_aggregates_customer_id', 'usage_aggregates', ['customer_id'])
    op.create_table(
        'usage_unique_values',
        sa.Column('subscription_id', sa.String(), primary_key=True),
        sa.Column('meter_id', sa.String(), primary_key=True),
        sa.Column('period_start', _TZ, primary_key=True),
        sa.Column('value', sa.String(), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table('usage_unique_values')
    op.drop_index('ix_usage_aggregates_customer_id', table_name='usage_aggregates')
    op.drop_table('usage_aggregates')
    op.drop_table('usage_events')
    op.drop_index('ix_plan_feature_limits_meter_id', table_name='plan_feature_limits')
    op.drop_table('plan_feature_limits')
    for column in ('package_size', 'meter_id', 'usage_type'):
        op.drop_column('plans', column)
    op.drop_index('ix_meters_event_name', table_name='meters')
    op.drop_table('meters')
