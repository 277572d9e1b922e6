"""experiment guard

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 13:56:57

`arm_stops`: experiment arms taken out of traffic by the guard (a sequential test found them worse than
control) or by a person, until lifted.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('arm_stops',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('prompt', sa.String(length=100), nullable=False),
    sa.Column('label', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('metric', sa.String(length=32), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('stopped_by', sa.String(length=254), nullable=False),
    sa.Column('stopped_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lifted_by', sa.String(length=254), nullable=True),
    sa.Column('lifted_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('arm_stops', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_arm_stops_stopped_at'), ['stopped_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('arm_stops', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_arm_stops_stopped_at'))

    op.drop_table('arm_stops')
