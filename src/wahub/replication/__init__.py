"""Replication: the ``changes`` log shipped to sinks (agent database, signed webhooks,
Elasticsearch), each from its own cursor, in order per chat."""

from __future__ import annotations

from wahub.replication.config import SinkConfig, parse_sinks
from wahub.replication.service import Replication, ReplicationError
from wahub.replication.shipper import Shipper
from wahub.replication.sinks.base import Delivery, Outcome, Sink, SinkUnavailable

__all__ = [
    "Delivery",
    "Outcome",
    "Replication",
    "ReplicationError",
    "Shipper",
    "Sink",
    "SinkConfig",
    "SinkUnavailable",
    "parse_sinks",
]
