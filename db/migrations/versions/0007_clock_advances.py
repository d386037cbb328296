"""test clocks: when the advance in progress was last driven (the sweeper resumes stale ones)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 19:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        'test_clocks', sa.Column('advance_driven_at', sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column('test_clocks', 'advance_driven_at')
