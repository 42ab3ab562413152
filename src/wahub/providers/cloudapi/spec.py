"""The Cloud API declares itself: it sends and receives; it has no group or chat lookup
(Meta cannot list a number's groups, and people's names come from inbound profiles)."""

from __future__ import annotations

from typing import Final

from wahub.providers.cloudapi.adapter import DEFAULT_API_VERSION, SUPPORTED_TYPES, CloudApiProvider
from wahub.providers.cloudapi.webhooks import (
    SIGNATURE_HEADER,
    dedupe_key,
    parse_body,
    verify_request,
)
from wahub.providers.spec import Capability, Connection, ProviderSpec, Receiver, WebhookAuth

KIND: Final = "cloudapi"

RECEIVER: Final = Receiver(
    provider=KIND,
    dedupe_key=dedupe_key,
    parse=parse_body,
    webhook=WebhookAuth(
        label="Cloud API",
        secret_setting="cloudapi_app_secret",
        verify=verify_request,
        failure=f"missing or invalid {SIGNATURE_HEADER} signature",
        kept_headers=("content-type", "user-agent", SIGNATURE_HEADER.lower()),
        summary="Receive Cloud API status webhooks",
    ),
)


def build_sender(connection: Connection) -> CloudApiProvider:
    """The adapter sending for one business number (``phone_number_id``)."""
    return CloudApiProvider(
        phone_number_id=connection.phone_number_id or "",
        access_token=connection.credentials.get("access_token", ""),
        session=connection.session,
        base_url=connection.base_url,
        api_version=connection.api_version or DEFAULT_API_VERSION,
        timeout_s=connection.timeout_s,
    )


SPEC: Final = ProviderSpec(
    kind=KIND,
    capabilities=frozenset({Capability.SEND, Capability.RECEIVE}),
    default_base_url="https://graph.facebook.com",
    credential_key="access_token",
    credential_name="access token",
    required={"phone_number_id": "phone_number_id must not be empty"},
    sender=build_sender,
    receiver=RECEIVER,
    # Meta echoes our biz_opaque_callback_data in every status of the message.
    echoes_tracking_id=True,
    send_types=SUPPORTED_TYPES,
)
