"""items and the customer balance: every subscription becomes one item of quantity 1; credit
carried as `credit` invoice lines becomes balance credit

Revision ID: 0009_items_and_balance
Revises: 0008_usage
Create Date: 2026-12-03 04:00:00

A subscription's item id is `si_` + the first 24 hex digits of md5(subscription id): the
workflow of a subscription created before items derives the same id
(`domain.items.legacy_item_id`).

Credit carried to the next invoice shows on invoices as `credit` lines: a positive line on
the invoice whose net was a credit (bringing it to zero) and a negative one on the invoice
that used it. The credit a subscription still carries is the sum of its `credit` lines on
invoices that were not voided (a voided invoice used nothing). That sum becomes one
`adjustment` entry of the customer's balance, keyed `carried_credit:<subscription id>`;
the workflow that still holds the carried line in its state writes the same key when it
moves the line to the balance, so the credit is counted once.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0009_items_and_balance'
down_revision = '0008_usage'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('subscription_items',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('subscription_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('plan_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(
        op.f('ix_subscription_items_subscription_id'),
        'subscription_items',
        ['subscription_id'],
        unique=False,
    )
    op.create_table('customer_balance_transactions',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('seq', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('balance_after', sa.BigInteger(), nullable=False),
    sa.Column('type', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('invoice_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('subscription_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('source_key', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('seq'),
    sa.UniqueConstraint('source_key')
    )
    op.create_index(
        'ix_customer_balance_transactions_customer',
        'customer_balance_transactions',
        ['customer_id', 'currency', 'seq'],
        unique=False,
    )
    op.execute(
        """
        INSERT INTO subscription_items (id, subscription_id, plan_id, quantity, position,
                                        created_at)
        SELECT 'si_' || left(md5(id), 24), id, plan_id, 1, 0, created_at FROM subscriptions
        """
    )
    op.execute(
        """
        WITH carried AS (
            SELECT i.subscription_id, i.customer_id, i.currency,
                   sum(l.amount) AS amount, max(i.created_at) AS at
            FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id
            WHERE l.kind = 'credit' AND i.status <> 'void'
            GROUP BY i.subscription_id, i.customer_id, i.currency
            HAVING sum(l.amount) > 0
        )
        INSERT INTO customer_balance_transactions (id, customer_id, currency, amount,
            balance_after, type, invoice_id, subscription_id, description, actor, source_key,
            created_at)
        SELECT 'cbtxn_' || left(md5('carried_credit:' || subscription_id), 24),
               customer_id, currency, amount,
               sum(amount) OVER (PARTITION BY customer_id, currency
                                 ORDER BY at, subscription_id),
               'adjustment', NULL, subscription_id,
               'Credit carried to the next invoice of ' || subscription_id,
               NULL, 'carried_credit:' || subscription_id, at
        FROM carried ORDER BY at, subscription_id
        """
    )


def downgrade() -> None:
    op.drop_index(
        'ix_customer_balance_transactions_customer', table_name='customer_balance_transactions'
    )
    op.drop_table('customer_balance_transactions')
    op.drop_index(op.f('ix_subscription_items_subscription_id'), table_name='subscription_items')
    op.drop_table('subscription_items')
