"""coupons, promotion codes and their redemptions; a subscription's discount in the read model

Revision ID: 0010_coupons
Revises: 0009_items_and_balance
Create Date: 2026-12-03 04:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0010_coupons'
down_revision = '0009_items_and_balance'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'coupons',
        sa.Column('id', sa.String(), primary_key=True),
        sa.Column('name', sa.String(), nullable=False),
        sa.Column('percent_off', sa.Numeric(5, 2), nullable=True),
        sa.Column('amount_off', sa.BigInteger(), nullable=True),
        sa.Column('currency', sa.String(), nullable=True),
        sa.Column('duration', sa.String(), nullable=False),
        sa.Column('duration_in_months', sa.Integer(), nullable=True),
        sa.Column('applies_to_plans', sa.JSON(), nullable=True),
        sa.Column('max_redemptions', sa.Integer(), nullable=True),
        sa.Column('times_redeemed', sa.Integer(), server_default='0', nullable=False),
        sa.Column('redeem_by', sa.DateTime(timezone=True), nullable=True),
        sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        # The database itself refuses a count past the cap.
        sa.CheckConstraint(
            'max_redemptions IS NULL OR times_redeemed <= max_redemptions',
            name='ck_coupons_within_max_redemptions',
        ),
    )
    op.create_table(
        'promotion_codes',
        sa.Column('id', sa.String(), primary_key=True),
        sa.Column('code', sa.String(), nullable=False),
        sa.Column('code_key', sa.String(), nullable=False),
        sa.Column('coupon_id', sa.String(), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('max_redemptions', sa.Integer(), nullable=True),
        sa.Column('times_redeemed', sa.Integer(), server_default='0', nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('customer_id', sa.String(), nullable=True),
        sa.Column('first_time_transaction', sa.Boolean(), nullable=False),
        sa.Column('minimum_amount', sa.BigInteger(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            'max_redemptions IS NULL OR times_redeemed <= max_redemptions',
            name='ck_promotion_codes_within_max_redemptions',
        ),
    )
    op.create_index('ix_promotion_codes_code_key', 'promotion_codes', ['code_key'], unique=True)
    op.create_index('ix_promotion_codes_coupon_id', 'promotion_codes', ['coupon_id'])
    op.create_table(
        'coupon_redemptions',
        sa.Column('id', sa.String(), primary_key=True),
        sa.Column('coupon_id', sa.String(), nullable=False),
        sa.Column('promotion_code_id', sa.String(), nullable=True),
        sa.Column('customer_id', sa.String(), nullable=False),
        sa.Column('subscription_id', sa.String(), nullable=False),
        sa.Column('status', sa.String(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    )
    for column in ('coupon_id', 'promotion_code_id', 'customer_id', 'subscription_id'):
        op.create_index(f'ix_coupon_redemptions_{column}', 'coupon_redemptions', [column])
    op.add_column('subscriptions', sa.Column('discount', sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column('subscriptions', 'discount')
    op.drop_table('coupon_redemptions')
    op.drop_table('promotion_codes')
    op.drop_table('coupons')
