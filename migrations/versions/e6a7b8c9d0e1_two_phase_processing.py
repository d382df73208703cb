"""two-phase processing: images.ready_at (thumbnails published)

Revision ID: e6a7b8c9d0e1
Revises: d5f6a7b8c9d0
Create Date: 2026-11-24 16:00:00.000000

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

PRECISE = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

# revision identifiers, used by Alembic.
revision = 'e6a7b8c9d0e1'
down_revision = 'd5f6a7b8c9d0'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ready_at', PRECISE, nullable=True))
    # Images processed before: their thumbnails were published when processing ended.
    op.execute("UPDATE images SET ready_at = processed_at WHERE status = 'complete'")


def downgrade():
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.drop_column('ready_at')
