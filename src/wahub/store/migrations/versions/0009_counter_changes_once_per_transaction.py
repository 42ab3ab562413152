"""Campaign counter rows logged to ``changes`` once per transaction on PostgreSQL.

A webhook batch moves a campaign's counter row once per status, and each move logged
the whole row to the replication log: on PostgreSQL that was half of what keeping the
counters cost status ingest (``wahub bench ingest``: 23 % slower with counters, 11 %
with the counter row's log trigger disabled). The states in between were never visible
outside the transaction, so the update trigger now runs at commit and logs the row's
last state only (``Replicated.once_per_transaction``): 11.6-19.1 % slower with counters
in three runs after it. SQLite keeps its triggers: it has no deferred triggers, and its
counters cost ingest -8 to 10 % (noise included).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import dataclasses

from alembic import op

from wahub.store.changelog import REPLICATED, install_capture

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _reinstall(*, once_per_transaction: bool) -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        return
    specs = [
        spec if once_per_transaction else dataclasses.replace(spec, once_per_transaction=False)
        for spec in REPLICATED
    ]
    install_capture(conn, specs)


def upgrade() -> None:
    _reinstall(once_per_transaction=True)


def downgrade() -> None:
    _reinstall(once_per_transaction=False)
