"""The Meta WhatsApp Cloud API adapter (Graph API ``POST /{phone_number_id}/messages``).

``CloudApiProvider`` implements the provider port (``wahub.providers.base.Provider``).
Error classification lives in ``errors`` and webhook handling in ``webhooks``, beside
this module.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

import aiohttp

from wahub.domain.errors import PermanentProviderError, ProviderError, ProviderOutcomeUnknown
from wahub.providers.base import Downloaded, OutboundMessage, SendResult
from wahub.providers.cloudapi.errors import classify_error
from wahub.providers.http import ProviderHttp, snippet

__all__ = [
    "DEFAULT_API_VERSION",
    "MAX_TRACKING_ID_CHARS",
    "SUPPORTED_TYPES",
    "CloudApiProvider",
    "build_send_body",
]

DEFAULT_API_VERSION: Final = "21.0"

# biz_opaque_callback_data limit (pywa, Meta as quoted by telepie).
MAX_TRACKING_ID_CHARS: Final = 512

# Message types the Cloud API sends. An allowlist, because the type name becomes a key of
# the request body and must not be able to overwrite "to" or "context".
SUPPORTED_TYPES: Final = frozenset(
    {
        "audio",
        "contacts",
        "document",
        "image",
        "interactive",
        "location",
        "reaction",
        "sticker",
        "template",
        "text",
        "video",
    }
)


def build_send_body(message: OutboundMessage) -> dict[str, Any]:
    """The JSON body of the Cloud API send request for ``message``.

    ``message.content`` is already Cloud API shaped (``{"type": "text", "text": {...}}``);
    its type object is deep-copied, so the body can be changed without touching the
    message. Adds ``recipient_type`` (``group`` for group messages), ``context`` when the
    message replies to another, and ``biz_opaque_callback_data`` = ``tracking_id`` so
    status webhooks lead back to our message. Other top-level keys of ``content`` are
    not sent.

    Raises ``PermanentProviderError`` (no request could ever succeed) when the tracking
    id is longer than ``MAX_TRACKING_ID_CHARS``, or the content has no supported
    ``type`` or no object for it.
    """
    tracking_id = message.tracking_id
    if len(tracking_id) > MAX_TRACKING_ID_CHARS:
        raise PermanentProviderError(
            f"tracking id is {len(tracking_id)} characters; the Cloud API's "
            f"biz_opaque_callback_data allows at most {MAX_TRACKING_ID_CHARS}",
            details={"field": "tracking_id", "length": len(tracking_id)},
        )
    message_type = message.content.get("type")
    if not isinstance(message_type, str) or message_type not in SUPPORTED_TYPES:
        raise PermanentProviderError(
            f"message content type {message_type!r} is not one the Cloud API sends "
            f"(expected one of {', '.join(sorted(SUPPORTED_TYPES))})",
            details={"field": "content.type"},
        )
    type_object = message.content.get(message_type)
    # Every type object is a JSON object except "contacts", which is a list of cards.
    if not isinstance(type_object, dict | list) or not type_object:
        raise PermanentProviderError(
            f"message content of type {message_type!r} has no {message_type!r} object",
            details={"field": f"content.{message_type}"},
        )
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "group" if message.is_group else "individual",
        "to": message.recipient,
        "type": message_type,
        message_type: copy.deepcopy(type_object),
    }
    if message.reply_to:
        body["context"] = {"message_id": message.reply_to}
    if tracking_id:
        body["biz_opaque_callback_data"] = tracking_id
    return body


class CloudApiProvider:
    """Sends messages from one business phone number through the Meta Cloud API.

    The ``aiohttp.ClientSession`` belongs to the caller, who shares it between providers
    and closes it; ``close()`` leaves it open. ``timeout_s`` bounds one send from start
    to the last byte of the answer; at most half of it goes to getting a connection.
    """

    def __init__(
        self,
        *,
        phone_number_id: str,
        access_token: str,
        session: aiohttp.ClientSession,
        base_url: str = "https://graph.facebook.com",
        api_version: str = DEFAULT_API_VERSION,
        timeout_s: float = 15.0,
    ) -> None:
        """Raises ``ValueError`` for an empty id or token, a base URL that is not an
        absolute http(s) URL, or a non-positive timeout: configuration mistakes that
        would otherwise fail every send."""
        if not phone_number_id:
            raise ValueError("phone_number_id must not be empty")
        if not access_token:
            raise ValueError("access_token must not be empty")
        self._http = ProviderHttp(
            "Cloud API", session, base_url, token=access_token, timeout_s=timeout_s
        )
        version = api_version.removeprefix("v")
        self._version = version
        self._number_path = f"/v{version}/{quote(phone_number_id, safe='')}"
        self._messages_path = f"{self._number_path}/messages"

    def __repr__(self) -> str:
        # Spelled out so the access token can never end up in a log line.
        return f"CloudApiProvider(messages_url={self.messages_url!r})"

    @property
    def messages_url(self) -> str:
        """The URL sends are POSTed to."""
        return self._http.base_url + self._messages_path

    async def send(self, message: OutboundMessage) -> SendResult:
        """POST ``message`` to the Cloud API; the accepted message's wamid and wa_id.

        Raises:
            PermanentProviderError: Meta refused the message for good (see
                ``classify_error``), or the message cannot be built (``build_send_body``).
            RetryableProviderError: Meta asked to retry (throttling, 5xx, ...), or the
                request provably never left: connection refused, DNS failure, TLS
                failure, no connection obtained in time.
            ProviderOutcomeUnknown: the request may have reached Meta but no usable
                answer came back (timeout or reset after sending, a 2xx without a
                message id). Resending at once could duplicate the message.
        """
        body = build_send_body(message)
        return await self._http.send(
            self._messages_path, body, classify=classify_error, accepted=_parse_send_success
        )

    async def upload_media(self, data: bytes, *, mime_type: str, filename: str) -> str:
        """``POST /{phone_number_id}/media`` (multipart): the provider's id of the file,
        usable in sends of this number (Meta keeps it 30 days).

        Raises ``RetryableProviderError`` (no answer, throttling; uploading again is
        harmless) or ``PermanentProviderError`` (refused: bad token, type, size).
        """
        form = aiohttp.FormData()
        form.add_field("messaging_product", "whatsapp")
        form.add_field("type", mime_type)
        form.add_field("file", data, filename=filename, content_type=mime_type)
        return await self._http.post_form(
            f"{self._number_path}/media",
            form,
            what="POST /{phone_number_id}/media",
            classify=_classify_read,
            parse=_media_id,
        )

    async def download_media(
        self, media_id: str, *, max_bytes: int, timeout_s: float
    ) -> Downloaded:
        """A received file: ``GET /{media_id}`` answers a short-lived URL (minutes), then
        that URL is fetched with the same token (PROVIDERS.md: inbound media). Raises
        ``RetryableProviderError``, ``PermanentProviderError`` or ``MediaTooLarge``."""
        url = await self._http.get_json(
            f"/v{self._version}/{quote(media_id, safe='')}",
            what="GET /{media_id}",
            classify=_classify_read,
            parse=_media_url,
        )
        return await self._http.download(
            url, what="media download", max_bytes=max_bytes, timeout_s=timeout_s
        )

    async def check(self) -> None:
        """``GET /{phone_number_id}``: Meta answers it only for a token allowed to use the
        number. Raises ``PermanentProviderError`` (an invalid token is code 190) or
        ``RetryableProviderError`` like a read."""
        await self._http.get_json(
            self._number_path,
            params={"fields": "id,display_phone_number"},
            what="GET /{phone_number_id}",
            classify=_classify_read,
            parse=_phone_number_node,
        )

    async def close(self) -> None:
        """Release what the provider owns: nothing, the session is the caller's."""


def _parse_send_success(status: int, raw: bytes) -> SendResult:
    """``SendResult`` from ``{"contacts": [{"wa_id"}], "messages": [{"id"}]}``.

    Without a message id we cannot tell whether Meta accepted the message, so it is
    ``ProviderOutcomeUnknown``, not a retryable error.
    """
    try:
        payload: Any = json.loads(raw)
    except ValueError:
        payload = None
    provider_message_id = _first_item_field(payload, "messages", "id")
    if provider_message_id is None:
        raise ProviderOutcomeUnknown(
            f"Cloud API answered HTTP {status} without messages[0].id: "
            f"{snippet(raw.decode('utf-8', errors='replace'))}",
            http_status=status,
        )
    return SendResult(
        provider_message_id=provider_message_id,
        wa_id=_first_item_field(payload, "contacts", "wa_id"),
    )


def _first_item_field(payload: Any, list_key: str, field: str) -> str | None:
    if not isinstance(payload, dict):
        return None
    items = payload.get(list_key)
    if not isinstance(items, list) or not items or not isinstance(items[0], dict):
        return None
    value = items[0].get(field)
    return value if isinstance(value, str) and value else None


def _classify_read(
    http_status: int, body: bytes | None, headers: Mapping[str, str], /, *, what: str
) -> ProviderError:
    error = classify_error(http_status, body, headers)
    return type(error)(
        f"Cloud API {what}: {error.message}",
        provider_code=error.provider_code,
        http_status=error.http_status,
        retry_after=error.retry_after,
        details=error.details,
    )


def _media_id(payload: Any) -> str:
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), str) or not payload["id"]:
        raise ValueError("not a media upload answer")
    return str(payload["id"])


def _media_url(payload: Any) -> str:
    url = payload.get("url") if isinstance(payload, dict) else None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError("not a media URL answer")
    return url


def _phone_number_node(payload: Any) -> str:
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), str):
        raise ValueError("not a phone number node")
    return str(payload["id"])
