"""The one line ``serve`` and ``worker`` log at start: what this process is about to do.

An operator reading a log (or a container's output) must see at once which database a
process uses, which channels it may send and which receivers would refuse webhooks,
without the password of the database or any secret.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from wahub.config import Settings
from wahub.webhook_secrets import RECEIVER_SECRETS, secret_value

if TYPE_CHECKING:
    from wahub.runtime import Hub

log = logging.getLogger("wahub.startup")

# A channel in this state is not sent (an operator stopped it).
PAUSED = "paused"


def redact_database_url(url: str) -> tuple[str, str]:
    """``url`` with its password replaced by ``***``, and its backend (``sqlite``,
    ``postgresql``). A URL SQLAlchemy cannot parse is not shown at all: a password may
    be anywhere in it."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "<unparsable database URL>", "unknown"
    return parsed.render_as_string(hide_password=True), parsed.get_backend_name()


def receiver_secrets(settings: Settings) -> dict[str, str]:
    """Each webhook receiver: ``set`` when its secret is configured, else ``unset`` (an
    unset receiver, or one whose secret is a known placeholder, answers
    ``503 webhook_not_configured``)."""
    return {
        spec.receiver: "unset" if secret_value(getattr(settings, spec.setting)) is None else "set"
        for spec in RECEIVER_SECRETS
    }


def startup_summary(
    settings: Settings,
    channels: Iterable[Mapping[str, Any]],
    *,
    command: str,
    workers: bool,
    admin_key: str,
) -> dict[str, Any]:
    """The fields of the start-up line: ``command`` (serve or worker), ``database``
    (password hidden), ``backend``, ``channels`` (``name (kind, status)`` each),
    ``paused_channels``, ``receivers`` (set/unset), ``workers`` (on/off) and
    ``admin_key`` (as ``AccessControl.bootstrap_admin_key`` found it).

    ``channels`` are rows as ``Channels.list_all`` returns them (no credentials).
    """
    listed = list(channels)
    database, backend = redact_database_url(settings.database_url)
    return {
        "command": command,
        "database": database,
        "backend": backend,
        "channels": [f"{c['name']} ({c['kind']}, {c['status']})" for c in listed],
        "paused_channels": [c["name"] for c in listed if c["status"] == PAUSED],
        "receivers": receiver_secrets(settings),
        "workers": "on" if workers else "off",
        "admin_key": admin_key,
    }


def log_startup_summary(summary: Mapping[str, Any]) -> None:
    """Log the summary as one event (its fields are keys of the JSON log line)."""
    log.info("wahub starting", extra=dict(summary))


async def on_start(hub: Hub, *, command: str, workers: bool) -> None:
    """Store the bootstrap admin key when one is due, then log the start-up summary of
    ``hub`` (its channels as stored now)."""
    key = hub.settings.bootstrap_admin_key
    admin_key = await hub.access.bootstrap_admin_key(
        key.get_secret_value() if key is not None else None
    )
    if admin_key == "stored":
        log.info("admin API key stored from WAHUB_BOOTSTRAP_ADMIN_KEY (user admin)")
    elif admin_key == "missing":
        log.warning(
            "no admin API key yet: create one with `wahub keys create --role admin --user "
            "NAME` (shown once), or set WAHUB_BOOTSTRAP_ADMIN_KEY and restart"
        )
    channels = await hub.channels.list_all()
    summary = startup_summary(
        hub.settings, channels, command=command, workers=workers, admin_key=admin_key
    )
    log_startup_summary(summary)
