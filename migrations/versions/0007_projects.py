"""projects

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 09:12:40.118204
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# The initial schema's UNIQUE (fingerprint) has no name of its own: PostgreSQL calls it
# signature_fingerprint_key; on SQLite, batch mode reflects it and this convention names it.
_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _fingerprint_key() -> str:
    if op.get_bind().dialect.name == "sqlite":
        return "uq_signature_fingerprint"
    return "signature_fingerprint_key"


def upgrade() -> None:
    # Every signature so far is the default project's; the key becomes (project, fingerprint).
    with op.batch_alter_table('signature', schema=None, naming_convention=_NAMES) as batch_op:
        batch_op.add_column(sa.Column('project', sqlmodel.sql.sqltypes.AutoString(length=64), server_default='default', nullable=False))
        batch_op.drop_constraint(_fingerprint_key(), type_='unique')
        batch_op.create_unique_constraint('uq_signature_project_fingerprint', ['project', 'fingerprint'])


def downgrade() -> None:
    # Only possible while no fingerprint is in two projects (the old key would refuse them).
    with op.batch_alter_table('signature', schema=None, naming_convention=_NAMES) as batch_op:
        batch_op.drop_constraint('uq_signature_project_fingerprint', type_='unique')
        batch_op.create_unique_constraint(_fingerprint_key(), ['fingerprint'])
        batch_op.drop_column('project')
