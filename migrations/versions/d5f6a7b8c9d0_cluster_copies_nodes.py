"""cluster: pool weight, nodes, image copies (every image's primary copy backfilled)

Revision ID: d5f6a7b8c9d0
Revises: c4e5f6a7b8c9
Create Date: 2026-11-24 14:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd5f6a7b8c9d0'
down_revision = 'c4e5f6a7b8c9'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('storage_pools', schema=None) as batch_op:
        batch_op.add_column(sa.Column('weight', sa.Integer(), server_default='100', nullable=False))

    op.create_table('nodes',
    sa.Column('node_id', sa.String(length=64), nullable=False),
    sa.Column('last_heartbeat_at', sa.DateTime(), nullable=True),
    sa.Column('lost_at', sa.DateTime(), nullable=True),
    sa.Column('scrub_cursor', sa.Integer(), nullable=False),
    sa.Column('scrub_started_at', sa.DateTime(), nullable=True),
    sa.Column('scrub_checked', sa.Integer(), nullable=False),
    sa.Column('scrub_bytes', sa.BigInteger(), nullable=False),
    sa.Column('scrub_findings', sa.Integer(), nullable=False),
    sa.Column('last_scrub_at', sa.DateTime(), nullable=True),
    sa.Column('last_scrub_checked', sa.Integer(), nullable=False),
    sa.Column('last_scrub_findings', sa.Integer(), nullable=False),
    sa.Column('last_scrub_note', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('node_id', name=op.f('pk_nodes'))
    )
    op.create_table('image_copies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('pool_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('verified_at', sa.DateTime(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_image_copies_image_id_images'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['pool_id'], ['storage_pools.id'], name=op.f('fk_image_copies_pool_id_storage_pools')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_image_copies')),
    sa.UniqueConstraint('image_id', 'pool_id', name=op.f('uq_image_copies_image_id_pool_id'))
    )
    with op.batch_alter_table('image_copies', schema=None) as batch_op:
        batch_op.create_index('ix_image_copies_pool_id_status', ['pool_id', 'status'], unique=False)
        batch_op.create_index('ix_image_copies_status', ['status'], unique=False)

    # Every image has one copy today, its primary: verified once processing completed.
    op.execute(
        "INSERT INTO image_copies (image_id, pool_id, status, verified_at, created_at, updated_at) "
        "SELECT id, storage_pool_id, "
        "CASE WHEN status = 'complete' THEN 'verified' ELSE 'pending' END, "
        "CASE WHEN status = 'complete' THEN COALESCE(processed_at, updated_at) END, "
        "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM images"
    )


def downgrade():
    with op.batch_alter_table('image_copies', schema=None) as batch_op:
        batch_op.drop_index('ix_image_copies_status')
        batch_op.drop_index('ix_image_copies_pool_id_status')
    op.drop_table('image_copies')
    op.drop_table('nodes')
    with op.batch_alter_table('storage_pools', schema=None) as batch_op:
        batch_op.drop_column('weight')
