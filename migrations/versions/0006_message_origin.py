"""who wrote each message: messages.origin

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 13:40:00

Existing rows are classified from what was stored: the visitor's and agents' messages by role; bot
replies are fixed texts when the handoff sent them, the model failed (status failed) or the leak guard
replaced them, and the model's otherwise (a model turn that only called the escalation tool is the
model's answer, shown with the handoff text; one whose stream broke before any text is the only row this
cannot tell apart, and it stays `model`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('origin', sa.String(length=16), nullable=True))
    op.execute("""
        UPDATE messages SET origin = CASE
            WHEN role = 'user' THEN 'visitor'
            WHEN role = 'agent' THEN 'agent'
            WHEN role = 'system' OR provider = 'handoff' OR status = 'failed' OR blocked_content IS NOT NULL
                THEN 'fixed'
            ELSE 'model'
        END
    """)
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.alter_column('origin', existing_type=sa.String(length=16), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('origin')
