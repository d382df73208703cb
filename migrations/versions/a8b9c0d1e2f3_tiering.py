"""tiering: tiering_runs, pool_moves.kind/tiering_run_id, images.views_day/views_on_day

Revision ID: a8b9c0d1e2f3
Revises: f7b8c9d0e1f2
Create Date: 2026-11-24 20:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a8b9c0d1e2f3'
down_revision = 'f7b8c9d0e1f2'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'tiering_runs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('as_of', sa.Date(), nullable=False),
        sa.Column('trigger', sa.String(length=16), nullable=False),
        sa.Column('dry_run', sa.Boolean(), nullable=False),
        sa.Column('images', sa.Integer(), nullable=False),
        sa.Column('bytes', sa.BigInteger(), nullable=False),
        sa.Column('moves', sa.Integer(), nullable=False),
        sa.Column('notes', sa.Text(), nullable=True),
        sa.Column('created_by', sa.Integer(), nullable=True),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['created_by'], ['users.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('tiering_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tiering_runs_as_of'), ['as_of'], unique=False)
    with op.batch_alter_table('pool_moves', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('kind', sa.String(length=16), nullable=False, server_default='pool')
        )
        batch_op.add_column(sa.Column('tiering_run_id', sa.Integer(), nullable=True))
        batch_op.create_index(
            batch_op.f('ix_pool_moves_tiering_run_id'), ['tiering_run_id'], unique=False
        )
        batch_op.create_foreign_key(
            'fk_pool_moves_tiering_run_id', 'tiering_runs', ['tiering_run_id'], ['id'],
            ondelete='SET NULL',
        )
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.add_column(sa.Column('views_day', sa.Date(), nullable=True))
        batch_op.add_column(
            sa.Column('views_on_day', sa.Integer(), nullable=False, server_default='0')
        )


def downgrade():
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.drop_column('views_on_day')
        batch_op.drop_column('views_day')
    with op.batch_alter_table('pool_moves', schema=None) as batch_op:
        batch_op.drop_constraint('fk_pool_moves_tiering_run_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_pool_moves_tiering_run_id'))
        batch_op.drop_column('tiering_run_id')
        batch_op.drop_column('kind')
    with op.batch_alter_table('tiering_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tiering_runs_as_of'))
    op.drop_table('tiering_runs')
