"""Replication sinks: the agent database, signed webhooks, Elasticsearch."""

from __future__ import annotations

from wahub.replication.sinks.base import Delivery, Outcome, Sink, SinkUnavailable

__all__ = ["Delivery", "Outcome", "Sink", "SinkUnavailable"]
