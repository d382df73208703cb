"""views counted in Redis and written in batches: images.last_viewed_at, view_flushes

Revision ID: c4e5f6a7b8c9
Revises: b3d4e5f6a7b8
Create Date: 2026-11-24 12:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c4e5f6a7b8c9'
down_revision = 'b3d4e5f6a7b8'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_viewed_at', sa.DateTime(), nullable=True))
    op.create_table('view_flushes',
    sa.Column('flush_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('flush_id', name=op.f('pk_view_flushes'))
    )


def downgrade():
    op.drop_table('view_flushes')
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.drop_column('last_viewed_at')
