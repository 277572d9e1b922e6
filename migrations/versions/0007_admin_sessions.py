"""revocable admin sessions: admin_sessions

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 15:00:00

A session cookie names a row here: logout revokes it, and a session counts only while the admin token's
fingerprint matches the one it was made with, so every replica on the database agrees.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'admin_sessions',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('actor', sa.String(length=100), nullable=False),
        sa.Column('token_fingerprint', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('admin_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_admin_sessions_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('admin_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_admin_sessions_expires_at'))
    op.drop_table('admin_sessions')
