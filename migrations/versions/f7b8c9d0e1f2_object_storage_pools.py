"""object-storage pools: the s3_* fields of storage_pools

Revision ID: f7b8c9d0e1f2
Revises: e6a7b8c9d0e1
Create Date: 2026-11-24 18:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f7b8c9d0e1f2'
down_revision = 'e6a7b8c9d0e1'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('storage_pools', schema=None) as batch_op:
        batch_op.add_column(sa.Column('s3_endpoint', sa.String(length=512), nullable=True))
        batch_op.add_column(sa.Column('s3_bucket', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('s3_region', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('s3_prefix', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('s3_access_key', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('s3_secret_key_enc', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('s3_addressing_style', sa.String(length=16), nullable=True))


def downgrade():
    with op.batch_alter_table('storage_pools', schema=None) as batch_op:
        for column in ('s3_addressing_style', 's3_secret_key_enc', 's3_access_key', 's3_prefix',
                       's3_region', 's3_bucket', 's3_endpoint'):
            batch_op.drop_column(column)
