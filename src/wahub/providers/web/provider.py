"""The ``web`` provider: sends a channel's messages through the live WhatsApp Web
session this process holds (the session process, ``wahub sessions``), downloading media
links itself, with a timeout and a size cap, so engines only ever get bytes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import aiohttp

from wahub.domain.errors import PermanentProviderError, RetryableProviderError
from wahub.domain.phones import GROUP_SUFFIX, PERSON_SUFFIX
from wahub.providers.base import OutboundMessage, SendResult
from wahub.providers.web.session import WebOutbound, WebSession

# What WhatsApp takes per media kind (it refuses, or shows broken, anything else).
ACCEPTED_MIMETYPES: dict[str, tuple[str, ...]] = {
    "image": ("image/jpeg", "image/png", "image/webp"),
    "video": ("video/mp4", "video/3gpp"),
    "audio": ("audio/",),
    "document": ("",),  # any type
}
MEDIA_TOO_LARGE = "media_too_large"
MEDIA_TYPE_REFUSED = "media_type_refused"
MEDIA_UNAVAILABLE = "media_unavailable"


def jid_for(recipient: str, *, is_group: bool) -> str:
    """The JID a session sends to: ``<id>@g.us`` for a group, ``<digits>@s.whatsapp.net``
    for a person (``recipient`` as ``chat_recipient`` gives it)."""
    if is_group:
        return recipient if recipient.endswith(GROUP_SUFFIX) else recipient + GROUP_SUFFIX
    return recipient.lstrip("+") + PERSON_SUFFIX


class MediaFetcher:
    """Downloads a media link for a send: at most ``max_bytes``, within ``timeout_s``.

    Raises PermanentProviderError (``media_too_large``, ``media_unavailable`` for a 4xx,
    ``media_type_refused``) when retrying cannot help, RetryableProviderError for a
    timeout, a 5xx or a network error.
    """

    def __init__(self, *, max_bytes: int, timeout_s: float) -> None:
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self._http: aiohttp.ClientSession | None = None

    async def fetch(self, url: str, kind: str) -> tuple[bytes, str]:
        """The file's bytes and its mimetype."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with self._http.get(url, timeout=timeout) as response:
                if response.status >= 500:
                    raise RetryableProviderError(
                        f"media link answered {response.status}", http_status=response.status
                    )
                if response.status >= 400:
                    raise PermanentProviderError(
                        f"media link answered {response.status}: {url}",
                        provider_code=MEDIA_UNAVAILABLE,
                        http_status=response.status,
                    )
                declared = response.content_length
                if declared is not None and declared > self.max_bytes:
                    raise _too_large(self.max_bytes)
                data = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    data.extend(chunk)
                    if len(data) > self.max_bytes:
                        raise _too_large(self.max_bytes)
                mimetype = response.content_type or "application/octet-stream"
        except TimeoutError:
            raise RetryableProviderError(
                f"media download took over {self.timeout_s:g} s: {url}"
            ) from None
        except aiohttp.ClientError as exc:
            raise RetryableProviderError(f"media download failed: {exc}") from None
        if not any(mimetype.startswith(p) for p in ACCEPTED_MIMETYPES.get(kind, ("",))):
            raise PermanentProviderError(
                f"WhatsApp does not take {mimetype} as {kind}",
                provider_code=MEDIA_TYPE_REFUSED,
            )
        return bytes(data), mimetype

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


def _too_large(limit: int) -> PermanentProviderError:
    return PermanentProviderError(
        f"the media file is larger than {limit} bytes (WAHUB_WEB_MEDIA_MAX_BYTES)",
        provider_code=MEDIA_TOO_LARGE,
    )


class WebProvider:
    """A web channel's sender over its live session. Raises RetryableProviderError when
    the session is gone (the outbox retries later), whatever the session raises else."""

    kind = "web"

    def __init__(self, session: WebSession, media: MediaFetcher) -> None:
        self.session = session
        self.media = media

    async def send(self, message: OutboundMessage) -> SendResult:
        content: dict[str, Any] = message.content
        kind = str(content.get("type", "text"))
        body = content.get(kind) or {}
        outbound = WebOutbound(
            tracking_id=message.tracking_id,
            to=jid_for(message.recipient, is_group=message.is_group),
            kind=kind,
            reply_to=message.reply_to,
        )
        if kind == "text":
            outbound = dataclasses.replace(outbound, text=str(body.get("body", "")))
        elif kind in ACCEPTED_MIMETYPES:
            data, mimetype = await self.media.fetch(str(body["link"]), kind)
            outbound = dataclasses.replace(
                outbound,
                text=body.get("caption"),
                media=data,
                mimetype=mimetype,
                filename=body.get("filename"),
            )
        else:
            raise PermanentProviderError(
                f"a web channel cannot send {kind} messages", provider_code="unsupported_type"
            )
        return await self.session.send(outbound)

    async def check(self) -> None:
        """A session proves itself by being connected: there is nothing to call."""

    async def close(self) -> None:
        """The session belongs to the session process, which closes it."""
