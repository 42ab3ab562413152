"""Users may sign in to the dashboard with a password.

- ``password_hash`` (new, nullable): the argon2id hash of the user's password; NULL
  means the user signs in with an API key only.
- ``password_role`` (new, nullable): the role a password sign-in gets (admin, agent or
  viewer). Roles belong to keys, and a user may hold keys of several roles, so the
  password carries its own, set with it (``wahub users set-password``).

Revision ID: 0016
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("password_hash", sa.String(200), nullable=True))
        batch.add_column(sa.Column("password_role", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("password_role")
        batch.drop_column("password_hash")
