"""WHAPI declares itself: it sends, lists groups with their members, names groups (its
group lookup carries the name) and receives."""

from __future__ import annotations

from typing import Final

from wahub.providers.group_chats import GroupChatDirectory
from wahub.providers.spec import Capability, Connection, ProviderSpec, Receiver, WebhookAuth
from wahub.providers.whapi.adapter import DEFAULT_BASE_URL, WhapiProvider
from wahub.providers.whapi.webhooks import (
    SECRET_HEADER,
    SECRET_QUERY,
    dedupe_key,
    parse_body,
    verify_request,
)

KIND: Final = "whapi"

RECEIVER: Final = Receiver(
    provider=KIND,
    dedupe_key=dedupe_key,
    parse=parse_body,
    webhook=WebhookAuth(
        label="WHAPI",
        secret_setting="whapi_webhook_secret",
        verify=verify_request,
        failure=f"missing or wrong webhook secret (?{SECRET_QUERY}= or {SECRET_HEADER})",
        kept_headers=("content-type", "user-agent"),
        # WHAPI signs nothing: the secret is ours, in the URL, so no body is read first.
        reads_body=False,
        secret_query=SECRET_QUERY,
        summary="Receive WHAPI webhooks (messages, statuses, any other event)",
    ),
)


def build_adapter(connection: Connection) -> WhapiProvider:
    """The adapter of one WHAPI channel (one token); ``phone_number`` is our own number,
    which tells groups we left from groups we are in."""
    return WhapiProvider(
        token=connection.credentials.get("token", ""),
        session=connection.session,
        base_url=connection.base_url,
        own_phone=connection.phone_number,
        timeout_s=connection.timeout_s,
    )


def build_chat_directory(connection: Connection) -> GroupChatDirectory:
    """Group names from the group lookup; people are not named here."""
    return GroupChatDirectory(build_adapter(connection))


SPEC: Final = ProviderSpec(
    kind=KIND,
    capabilities=frozenset(
        {Capability.SEND, Capability.GROUPS, Capability.CHATS, Capability.RECEIVE}
    ),
    default_base_url=DEFAULT_BASE_URL,
    credential_key="token",
    credential_name="token",
    phone_number_is_ours=True,
    sender=build_adapter,
    groups=build_adapter,
    chats=build_chat_directory,
    receiver=RECEIVER,
    # WHAPI statuses carry only its own message id, which a lost answer never told us.
    echoes_tracking_id=False,
    # Only text goes through WHAPI today (build_text_body refuses the rest).
    send_types=frozenset({"text"}),
)
