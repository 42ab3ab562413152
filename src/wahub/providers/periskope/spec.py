"""Periskope declares itself: a chat directory that names people and groups, and
webhooks; it sends nothing through wahub."""

from __future__ import annotations

from typing import Final

from wahub.providers.periskope.adapter import DEFAULT_BASE_URL, PeriskopeChatDirectory
from wahub.providers.periskope.webhooks import (
    SIGNATURE_HEADER,
    dedupe_key,
    parse_body,
    verify_request,
)
from wahub.providers.spec import Capability, Connection, ProviderSpec, Receiver, WebhookAuth

KIND: Final = "periskope"

RECEIVER: Final = Receiver(
    provider=KIND,
    dedupe_key=dedupe_key,
    parse=parse_body,
    webhook=WebhookAuth(
        label="Periskope",
        secret_setting="periskope_webhook_secret",
        verify=verify_request,
        failure=f"missing or invalid {SIGNATURE_HEADER} signature",
        kept_headers=("content-type", "user-agent", SIGNATURE_HEADER),
        summary="Receive Periskope webhooks (message.created, any other event)",
    ),
)


def build_chat_directory(connection: Connection) -> PeriskopeChatDirectory:
    """The chat directory of one org phone (``phone_number``, sent as ``x-phone``)."""
    return PeriskopeChatDirectory(
        api_key=connection.credentials.get("api_key", ""),
        org_phone=connection.phone_number or "",
        session=connection.session,
        base_url=connection.base_url,
        timeout_s=connection.timeout_s,
    )


SPEC: Final = ProviderSpec(
    kind=KIND,
    capabilities=frozenset({Capability.CHATS, Capability.RECEIVE}),
    default_base_url=DEFAULT_BASE_URL,
    credential_key="api_key",
    credential_name="API key",
    required={"phone_number": "phone_number: a periskope channel needs its org phone (x-phone)"},
    phone_number_is_ours=True,
    chats=build_chat_directory,
    receiver=RECEIVER,
    names_people=True,
)
