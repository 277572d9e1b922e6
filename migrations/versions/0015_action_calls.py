"""action calls

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 17:51:12

`action_calls`: each action the model called in a turn (service/actions/), what the team's API answered and
what the model was given; a side-effect call waits here for the visitor's Confirm.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('action_calls',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('conversation_id', sa.String(length=32), nullable=False),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('reply_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('call_id', sa.String(length=100), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('arguments', sa.JSON(), nullable=True),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('http_status', sa.Integer(), nullable=True),
    sa.Column('latency_ms', sa.Integer(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('error', sa.String(length=300), nullable=True),
    sa.Column('tool_content', sa.Text(), nullable=False),
    sa.Column('summary', sa.String(length=500), nullable=True),
    sa.Column('confirms_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['confirms_id'], ['action_calls.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['reply_id'], ['messages.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('action_calls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_action_calls_action'), ['action'], unique=False)
        batch_op.create_index('ix_action_calls_conversation_id_id', ['conversation_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_action_calls_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_action_calls_message_id'), ['message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_action_calls_reply_id'), ['reply_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('action_calls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_action_calls_reply_id'))
        batch_op.drop_index(batch_op.f('ix_action_calls_message_id'))
        batch_op.drop_index(batch_op.f('ix_action_calls_created_at'))
        batch_op.drop_index('ix_action_calls_conversation_id_id')
        batch_op.drop_index(batch_op.f('ix_action_calls_action'))

    op.drop_table('action_calls')
