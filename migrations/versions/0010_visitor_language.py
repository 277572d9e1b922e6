"""visitor language

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 17:03:55

`messages.language` is the language of a visitor's message (ISO 639-1, detected or inferred, NULL for the
others); `conversations.language` the visitor's latest confident one, indexed with `updated_at` for the
review inbox's language filter.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('language', sa.String(length=8), nullable=True))
        batch_op.create_index('ix_conversations_language_updated', ['language', 'updated_at'], unique=False)

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('language', sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('language')

    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_index('ix_conversations_language_updated')
        batch_op.drop_column('language')
