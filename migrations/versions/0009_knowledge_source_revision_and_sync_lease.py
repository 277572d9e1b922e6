"""knowledge source revision and sync lease

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 16:15:03

`knowledge_sources.revision` changes whenever a source's entries change, so every replica reloads the
imported knowledge with one small query; `locked_until` is the lease a replica holds while it syncs the
source on schedule (the outbox's pattern), so replicas on one database never sync a source twice at once.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('knowledge_sources', schema=None) as batch_op:
        batch_op.add_column(sa.Column('revision', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('knowledge_sources', schema=None) as batch_op:
        batch_op.drop_column('locked_until')
        batch_op.drop_column('revision')
