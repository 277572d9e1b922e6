"""experiments

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 08:57:19

`conversations.arm`: the experiment arm (prompt version ref) a conversation was assigned when it started;
`conversation_ratings`: the visitor's CSAT (1-5) per conversation; `finetune_jobs`: fine-tuning jobs started
from supportbot, with the examples each trained on.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('finetune_jobs',
    sa.Column('id', sa.String(length=100), nullable=False),
    sa.Column('backend', sa.String(length=16), nullable=False),
    sa.Column('base_model', sa.String(length=200), nullable=False),
    sa.Column('suffix', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('fine_tuned_model', sa.String(length=200), nullable=True),
    sa.Column('training_file', sa.String(length=200), nullable=True),
    sa.Column('validation_file', sa.String(length=200), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('trained_message_ids', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.String(length=254), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('finetune_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_finetune_jobs_created_at'), ['created_at'], unique=False)

    op.create_table('conversation_ratings',
    sa.Column('conversation_id', sa.String(length=32), nullable=False),
    sa.Column('score', sa.Integer(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('conversation_id')
    )
    with op.batch_alter_table('conversation_ratings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_conversation_ratings_created_at'), ['created_at'], unique=False)

    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('arm', sa.String(length=160), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_column('arm')

    with op.batch_alter_table('conversation_ratings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_conversation_ratings_created_at'))

    op.drop_table('conversation_ratings')
    with op.batch_alter_table('finetune_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_finetune_jobs_created_at'))

    op.drop_table('finetune_jobs')
