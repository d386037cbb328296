"""idempotency reservations: a key is reserved (no answer yet) before the work starts

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        'idempotency_records',
        sa.Column('reservation', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    )
    op.add_column(
        'idempotency_records',
        sa.Column('redacted', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    )
    op.alter_column('idempotency_records', 'status_code', nullable=True)
    op.alter_column('idempotency_records', 'response_body', nullable=True)
    op.create_index(
        'ix_idempotency_records_created_at', 'idempotency_records', ['created_at']
    )


def downgrade() -> None:
    # Reservations without an answer cannot be kept by the old schema.
    op.execute('DELETE FROM idempotency_records WHERE status_code IS NULL')
    op.drop_index('ix_idempotency_records_created_at', table_name='idempotency_records')
    op.alter_column('idempotency_records', 'response_body', nullable=False)
    op.alter_column('idempotency_records', 'status_code', nullable=False)
    op.drop_column('idempotency_records', 'redacted')
    op.drop_column('idempotency_records', 'reservation')
