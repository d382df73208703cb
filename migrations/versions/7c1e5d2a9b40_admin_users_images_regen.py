"""admin users/images pages and regenerate runs

Revision ID: 7c1e5d2a9b40
Revises: 530f3f7a941c
Create Date: 2026-11-23 22:40:00.000000

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

PRECISE = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


# revision identifiers, used by Alembic.
revision = '7c1e5d2a9b40'
down_revision = '530f3f7a941c'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('regen_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pool_id', sa.Integer(), nullable=True),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('started_at', PRECISE, nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('max_image_id', sa.Integer(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_regen_runs_created_by_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['pool_id'], ['storage_pools.id'], name=op.f('fk_regen_runs_pool_id_storage_pools'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_regen_runs'))
    )
    with op.batch_alter_table('regen_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_regen_runs_pool_id'), ['pool_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_regen_runs_status'), ['status'], unique=False)

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deleted_at', sa.DateTime(), nullable=True))

    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.create_index('ix_images_pool_status_deleted', ['storage_pool_id', 'status', 'deleted_at'], unique=False)
        batch_op.create_index('ix_images_processed_at', ['processed_at'], unique=False)
        batch_op.create_index('ix_images_created_at', ['created_at'], unique=False)
        batch_op.create_index('ix_images_deleted_at', ['deleted_at'], unique=False)
        batch_op.alter_column('processed_at', existing_type=sa.DateTime(), type_=PRECISE,
                              existing_nullable=True)


def downgrade():
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.alter_column('processed_at', existing_type=PRECISE, type_=sa.DateTime(),
                              existing_nullable=True)
        batch_op.drop_index('ix_images_deleted_at')
        batch_op.drop_index('ix_images_created_at')
        batch_op.drop_index('ix_images_processed_at')
        batch_op.drop_index('ix_images_pool_status_deleted')

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('deleted_at')

    with op.batch_alter_table('regen_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_regen_runs_status'))
        batch_op.drop_index(batch_op.f('ix_regen_runs_pool_id'))

    op.drop_table('regen_runs')
