"""One way to make an outbound message: the row every entry point queues (API sends,
campaigns, auto-replies), the ordering rule, and the channel choice and template check
that sends and campaigns share.

The outbox claims messages per ordering key in order (DESIGN invariant 6), so the key
is spelled here once: one lane per chat on a channel. A message whose key is spelled
differently would race its own chat.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection as SyncConnection

from wahub.domain.errors import ValidationError
from wahub.domain.ids import new_id
from wahub.store import channels as channel_q


def ordering_key(channel_id: str, chat_id: str) -> str:
    """The lane a message of ``chat_id`` on ``channel_id`` is sent in: messages with one
    key leave in the order they were stored; other chats do not wait for it."""
    return f"{channel_id}:{chat_id}"


def readable_text(content: dict[str, Any]) -> str | None:
    """What the recipient reads: a text's body or a media caption (for previews, search)."""
    body = content.get(content.get("type", ""))
    if not isinstance(body, dict):
        return None
    text = body.get("body") or body.get("caption")
    return text if isinstance(text, str) else None


def queued_message(
    *,
    channel_id: str,
    chat_id: str,
    content: dict[str, Any],
    now: float,
    priority: int = 0,
    sender_user_id: str | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    reply_to: str | None = None,
    campaign_id: str | None = None,
    template_name: str | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """A new outbound message row, ``queued`` and due at ``now``, ready to insert.

    ``content`` is the provider-neutral body (``{"type": ..., <type>: {...}}``); the
    row's type and readable text come from it, its ordering key from ``ordering_key``.
    Every row has the same columns, so rows of any entry point insert together.
    """
    return {
        "id": new_id("msg"),
        "channel_id": channel_id,
        "chat_id": chat_id,
        "direction": "out",
        "type": content["type"],
        "content": content,
        "text": readable_text(content),
        "status": "queued",
        "idempotency_key": idempotency_key,
        "request_hash": request_hash,
        "reply_to": reply_to,
        "sender_user_id": sender_user_id,
        "campaign_id": campaign_id,
        "template_name": template_name,
        "source": source,
        "ordering_key": ordering_key(channel_id, chat_id),
        "priority": priority,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }


def default_channel(
    conn: SyncConnection,
    listed: Callable[[], list[dict[str, Any]]],
    default: str | None = None,
) -> dict[str, Any] | None:
    """The channel a send naming none goes to: ``default`` while that channel exists,
    else the only one there is; None when there is no channel or a choice to make."""
    channels = listed()
    if default is not None:
        chosen = next((c for c in channels if c["id"] == default), None)
        chosen = chosen or channel_q.get_channel_sync(conn, default)
        if chosen is not None:
            return chosen
    return channels[0] if len(channels) == 1 else None


def choose_channel(
    conn: SyncConnection,
    *,
    asked: str | None,
    listed: Callable[[], list[dict[str, Any]]],
    chat_channel_id: str | None = None,
    chat_id: str | None = None,
    default: str | None = None,
) -> dict[str, Any]:
    """The channel to send on: the one ``asked`` for (by id or name), else the group's
    own (``chat_channel_id``), else ``default_channel`` (``default``, else the only one
    there is).

    ``listed`` gives the channels (a caller may cache them; a channel asked for that is
    not in the list is read). Raises ValidationError naming ``channel_id`` for an
    unknown channel, a group's channel other than the one asked, or a choice to make.
    """
    if asked is not None:
        channel = _named(conn, asked, listed)
        if chat_channel_id is not None and channel["id"] != chat_channel_id:
            raise ValidationError(
                f"channel_id: group {chat_id} belongs to channel {chat_channel_id}, not {asked}",
                details={"field": "channel_id", "value": asked},
            )
        return channel
    if chat_channel_id is not None:
        return _named(conn, chat_channel_id, listed)
    chosen = default_channel(conn, listed, default)
    if chosen is not None:
        return chosen
    channels = listed()
    if not channels:
        raise ValidationError(
            "no channel is configured: add one with `wahub channels add` first",
            details={"field": "channel_id"},
        )
    raise ValidationError(
        "channel_id is required when more than one channel exists",
        details={"field": "channel_id", "choices": [c["id"] for c in channels]},
    )


def _named(
    conn: SyncConnection, ref: str, listed: Callable[[], list[dict[str, Any]]]
) -> dict[str, Any]:
    """The channel ``ref`` names, by id first, then by name; the listed ones first."""
    cached = listed()
    known = next((c for c in cached if c["id"] == ref), None) or next(
        (c for c in cached if c["name"] == ref), None
    )
    channel = known or channel_q.find_channel_sync(conn, ref)
    if channel is None:
        raise ValidationError(
            f"channel_id: unknown channel {ref!r}",
            details={"field": "channel_id", "value": ref},
        )
    return channel


def check_template(
    conn: SyncConnection,
    channel_id: str,
    *,
    name: str,
    language: str,
    body_parameters: int,
    name_field: str,
    parameters_field: str,
) -> None:
    """Refuse a template the channel does not have (``name_field``) or one given another
    number of body parameters than it takes (``parameters_field``): WhatsApp would
    refuse the send later, so nothing is queued. Raises ValidationError."""
    known = channel_q.get_template_sync(conn, channel_id, name, language)
    if known is None:
        raise ValidationError(
            f"{name_field}: template {name!r} ({language}) is not registered (not approved "
            f"on channel {channel_id} as far as wahub knows); add it with "
            "`wahub channels template`",
            details={"field": name_field, "value": name},
        )
    if body_parameters != known["body_parameters"]:
        raise ValidationError(
            f"{parameters_field}: {name!r} takes {known['body_parameters']} body "
            f"parameter(s), {body_parameters} given",
            details={"field": parameters_field},
        )
