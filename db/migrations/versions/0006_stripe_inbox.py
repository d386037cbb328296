"""stripe inbox: what is still to be done about each inbound Stripe event

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('stripe_events', sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), server_default='done', nullable=False))
    op.add_column('stripe_events', sa.Column('subscription_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.add_column('stripe_events', sa.Column('invoice_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.add_column('stripe_events', sa.Column('payment_intent_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.add_column('stripe_events', sa.Column('amount', sa.BigInteger(), nullable=True))
    op.add_column('stripe_events', sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.add_column('stripe_events', sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))
    op.add_column('stripe_events', sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('stripe_events', sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True))
    op.add_column('stripe_events', sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.add_column('stripe_events', sa.Column('refund_key', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.add_column('stripe_events', sa.Column('refund_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.add_column('stripe_events', sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True))
    # Events recorded before the inbox were handled (or lost) by the request that took them.
    op.execute("UPDATE stripe_events SET processed_at = received_at")
    op.create_unique_constraint('uq_stripe_events_refund_key', 'stripe_events', ['refund_key'])
    op.create_index('ix_stripe_events_unprocessed', 'stripe_events', ['status', 'next_attempt_at'], unique=False, postgresql_where=sa.text('processed_at IS NULL'))


def downgrade() -> None:
    op.drop_index('ix_stripe_events_unprocessed', table_name='stripe_events', postgresql_where=sa.text('processed_at IS NULL'))
    op.drop_constraint('uq_stripe_events_refund_key', 'stripe_events', type_='unique')
    for column in ('processed_at', 'refund_id', 'refund_key', 'last_error', 'claimed_until',
                   'next_attempt_at', 'attempts', 'currency', 'amount', 'payment_intent_id',
                   'invoice_id', 'subscription_id', 'status'):
        op.drop_column('stripe_events', column)
