"""The HTTP plumbing every provider adapter shares: a request with a time budget and no
redirects, answered with decoded JSON or a classified ``ProviderError``.

``ProviderHttp`` is one account's access to one provider API. It owns what must not
differ between adapters: how long a call may take and how much of that goes to getting
a connection, that redirects are never followed, which transport failures are retryable
and which leave a send's outcome unknown, and how an unreadable answer is reported. What
an error status *means* stays with each adapter, whose ``classify_error`` it is handed:
the providers' error bodies differ (PROVIDERS.md 1.3, 2.3, 3).

The helper functions below are the small pieces of those classifiers that are the same
for every provider: ``Retry-After``, the ``{"error": {...}}`` object, quoting a body.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, Final, Protocol, TypeVar

import aiohttp
from yarl import URL

from wahub.domain.errors import (
    MediaTooLarge,
    NotFound,
    PermanentProviderError,
    ProviderError,
    ProviderOutcomeUnknown,
    RetryableProviderError,
)
from wahub.providers.base import Downloaded

__all__ = [
    "SNIPPET_CHARS",
    "ProviderHttp",
    "ReadClassifier",
    "SendClassifier",
    "describe_body",
    "error_code",
    "error_for_status",
    "error_object",
    "fetch_capped",
    "first_text",
    "parse_retry_after",
    "retry_after",
    "retryable_status",
    "snippet",
]

# Share of the time budget allowed for getting a connection. It must be strictly less
# than the whole budget: aiohttp reports a connect-phase timeout as
# ConnectionTimeoutError (nothing sent: retryable) only when the connect timeout fires
# before the total one, which otherwise surfaces as a bare TimeoutError (ambiguous).
_CONNECT_SHARE: Final = 0.5

# How much of a body an error message quotes: enough to recognise a proxy's error page.
SNIPPET_CHARS: Final = 200

T = TypeVar("T")

# A send's classifier: status, body (None when it could not be read) and headers.
SendClassifier = Callable[[int, bytes | None, Mapping[str, str]], ProviderError]


class ReadClassifier(Protocol):
    """A read's classifier; ``what`` names the call (``GET /groups``) in the message."""

    def __call__(
        self, http_status: int, body: bytes | None, headers: Mapping[str, str], /, *, what: str
    ) -> ProviderError: ...


class ProviderHttp:
    """Calls one provider API with one set of credentials.

    ``provider`` is the name errors start with (``"WHAPI"``). The session belongs to the
    adapter's caller, who shares it between providers and closes it. Every request
    carries ``Authorization: Bearer <token>`` and ``headers``. ``timeout_s`` bounds one
    call from start to the last byte of the answer; at most half of it goes to getting a
    connection.
    """

    __slots__ = ("_base_url", "_headers", "_provider", "_session", "_timeout")

    def __init__(
        self,
        provider: str,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        token: str,
        timeout_s: float,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Raises ``ValueError`` for a non-positive timeout or a base URL that is not an
        absolute http(s) URL: configuration mistakes that would otherwise fail every
        call."""
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        base = URL(base_url.rstrip("/"))
        if base.scheme not in ("http", "https") or not base.host:
            raise ValueError(f"base_url must be an absolute http(s) URL, got {base_url!r}")
        self._provider = provider
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}", **(headers or {})}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=timeout_s * _CONNECT_SHARE)

    def __repr__(self) -> str:
        # Spelled out so the credentials in the headers can never end up in a log line.
        return f"ProviderHttp(provider={self._provider!r}, base_url={self._base_url!r})"

    @property
    def base_url(self) -> str:
        """The base URL without a trailing slash; paths are appended to it."""
        return self._base_url

    async def get_json(
        self,
        path: str,
        *,
        what: str,
        classify: ReadClassifier,
        parse: Callable[[Any], T],
        params: Mapping[str, str] | None = None,
        not_found: str | None = None,
    ) -> T:
        """GET ``path``; ``parse`` of the decoded JSON answer, or the matching error.

        ``parse`` raises ``ValueError`` when the answer is not the documented shape.
        Reads change nothing at the provider, so a timeout or a reset at any point is
        simply retryable (unlike a send, where it leaves the outcome unknown), and so is
        a 2xx that is not JSON or not the documented shape. A 404 raises
        ``NotFound(not_found)`` when ``not_found`` is given; every other error status is
        ``classify``'s.
        """
        return await self._call_json(
            "GET",
            path,
            what=what,
            classify=classify,
            parse=parse,
            not_found=not_found,
            params=params,
        )

    async def post_form(
        self,
        path: str,
        form: aiohttp.FormData,
        *,
        what: str,
        classify: ReadClassifier,
        parse: Callable[[Any], T],
    ) -> T:
        """POST the multipart ``form`` to ``path``; ``parse`` of the JSON answer.

        Only for calls whose repetition is harmless, as a media upload's is (a second
        copy is an unused file at the provider, never a second message): so, like a
        read, every failure to get an answer is retryable.
        """
        return await self._call_json(
            "POST", path, what=what, classify=classify, parse=parse, data=form
        )

    async def _call_json(
        self,
        method: str,
        path: str,
        *,
        what: str,
        classify: ReadClassifier,
        parse: Callable[[Any], T],
        not_found: str | None = None,
        **options: Any,
    ) -> T:
        try:
            async with self._request(method, path, **options) as response:
                status = response.status
                headers = response.headers
                raw = await response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise RetryableProviderError(
                f"{self._provider} {what} failed: {_describe(exc)}"
            ) from exc
        if 200 <= status < 300:
            try:
                return parse(json.loads(raw))
            except ValueError as exc:
                # Most likely a proxy or a half-deployed provider: a read changed
                # nothing, so trying again later is safe.
                raise RetryableProviderError(
                    f"{self._provider} {what} answered with an unexpected body: "
                    f"{snippet(raw.decode('utf-8', errors='replace'))}"
                ) from exc
        if status == 404 and not_found is not None:
            error = classify(status, raw, headers, what=what)
            raise NotFound(not_found, details={"http_status": 404, **error.details})
        raise classify(status, raw, headers, what=what)

    async def send(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        classify: SendClassifier,
        accepted: Callable[[int, bytes], T],
    ) -> T:
        """POST the JSON ``body`` of a message send to ``path``; ``accepted(status,
        body)`` reads a 2xx answer, ``classify`` turns any other status into an error.

        Raises:
            RetryableProviderError: the request provably never left (connection refused,
                DNS or TLS failure, no connection obtained in time), or ``classify`` says
                the refusal is worth retrying.
            PermanentProviderError: ``classify`` says the provider refused for good.
            ProviderOutcomeUnknown: the request may have reached the provider but no
                usable answer came back (timeout or reset after sending, a 2xx body that
                was lost). Resending at once could duplicate the message.
        """
        try:
            async with self._request("POST", path, json=body) as response:
                status = response.status
                try:
                    raw = await response.read()
                except (TimeoutError, aiohttp.ClientError) as exc:
                    if 200 <= status < 300:
                        raise ProviderOutcomeUnknown(
                            f"{self._provider} answered HTTP {status} "
                            f"but its body was lost: {_describe(exc)}",
                            http_status=status,
                        ) from exc
                    # An error status means the provider did not accept the message, so
                    # the status alone classifies the refusal when the body is lost.
                    raise classify(status, None, response.headers) from exc
                if 200 <= status < 300:
                    return accepted(status, raw)
                raise classify(status, raw, response.headers)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # Raised before a connection existed, so not a byte of the request was sent.
            raise RetryableProviderError(
                f"{self._provider} not reached, message not sent: {_describe(exc)}"
            ) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ProviderOutcomeUnknown(
                f"{self._provider} call failed after the request was sent, "
                f"the message may have been accepted: {_describe(exc)}"
            ) from exc

    async def download(
        self, url: str, *, what: str, max_bytes: int, timeout_s: float
    ) -> Downloaded:
        """GET the absolute ``url`` with this account's credentials (a provider's own
        media host): see ``fetch_capped``."""
        return await fetch_capped(
            self._session,
            url,
            what=f"{self._provider} {what}",
            max_bytes=max_bytes,
            timeout_s=timeout_s,
            headers=self._headers,
        )

    @asynccontextmanager
    async def _request(
        self, method: str, path: str, **options: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        async with self._session.request(
            method,
            f"{self._base_url}{path}",
            headers=self._headers,
            timeout=self._timeout,
            # A redirect would carry the credentials, and a send's message, to a host
            # nobody configured.
            allow_redirects=False,
            **options,
        ) as response:
            yield response


async def fetch_capped(
    session: aiohttp.ClientSession,
    url: str,
    *,
    what: str,
    max_bytes: int,
    timeout_s: float,
    headers: Mapping[str, str] | None = None,
) -> Downloaded:
    """GET ``url`` and read at most ``max_bytes`` of its body, within ``timeout_s`` from
    start to the last byte.

    A download is harmless to repeat, so every failure to get the file is a
    ``RetryableProviderError`` except a file over ``max_bytes`` (``MediaTooLarge``, told
    by ``Content-Length`` before the body is read, else by counting) and a 4xx answer
    other than 408/429 (``PermanentProviderError``: the link is gone or not ours).
    Redirects are followed only without ``headers``: credentials go to no other host.
    """
    timeout = aiohttp.ClientTimeout(total=timeout_s, connect=timeout_s * _CONNECT_SHARE)
    try:
        async with session.get(
            url, headers=headers, timeout=timeout, allow_redirects=headers is None
        ) as response:
            if response.status != 200:
                raw = await response.content.read(SNIPPET_CHARS)
                raise error_for_status(
                    response.status,
                    f"{what}: HTTP {response.status}: " + snippet(raw.decode("utf-8", "replace")),
                    retry_after=retry_after(response.headers),
                )
            declared = response.content_length
            if declared is not None and declared > max_bytes:
                raise MediaTooLarge(
                    f"{what}: {declared} bytes, over the {max_bytes}-byte limit "
                    "(WAHUB_MEDIA_MAX_BYTES)",
                    details={"size": declared, "limit": max_bytes},
                )
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > max_bytes:
                    raise MediaTooLarge(
                        f"{what}: over the {max_bytes}-byte limit (WAHUB_MEDIA_MAX_BYTES)",
                        details={"size": size, "limit": max_bytes},
                    )
                chunks.append(chunk)
            mime = response.headers.get("Content-Type")
            return Downloaded(b"".join(chunks), mime.split(";")[0].strip() if mime else None)
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise RetryableProviderError(f"{what} failed: {_describe(exc)}") from exc


def error_for_status(
    http_status: int,
    message: str,
    *,
    code: int | str | None = None,
    retry_after: float | None = None,
    details: dict[str, Any] | None = None,
) -> ProviderError:
    """A ``RetryableProviderError`` when ``retryable_status`` says so, else a
    ``PermanentProviderError``: for answers only their HTTP status can classify."""
    error_class = (
        RetryableProviderError if retryable_status(http_status) else PermanentProviderError
    )
    return error_class(
        message,
        provider_code=code,
        http_status=http_status,
        retry_after=retry_after,
        details=details,
    )


def retryable_status(http_status: int) -> bool:
    """Whether an HTTP status alone says a retry may succeed: 408, 429 and 5xx."""
    # 408: the server gave up before reading the whole request, so it did not act on it.
    return http_status >= 500 or http_status in (408, 429)


def retry_after(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """The ``Retry-After`` header of ``headers`` in seconds (see ``parse_retry_after``)."""
    return parse_retry_after(_header(headers, "retry-after"), now=now)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header value, or ``None``.

    Accepts delay-seconds (``"120"``, also ``"1.5"``) and an HTTP date (a date in the
    past gives ``0.0``). ``None``, empty, negative or unparsable values give ``None``:
    a malformed header must not turn into a made-up delay. ``now`` (unix seconds) is the
    clock an HTTP date is measured against.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        return _seconds_until_http_date(text, now=now)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _seconds_until_http_date(text: str, *, now: float | None) -> float | None:
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    # A date without a zone is naive: HTTP dates are GMT by definition.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, moment.timestamp() - current)


def _header(headers: Mapping[str, str] | None, lowercase_name: str) -> str | None:
    # A linear scan so plain dicts behave like aiohttp's case-insensitive headers.
    if headers is None:
        return None
    for key, value in headers.items():
        if key.lower() == lowercase_name:
            return value
    return None


def error_object(body: bytes | Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The ``error`` object of an ``{"error": {...}}`` body (raw or decoded), if it is one."""
    decoded: Any = body
    if isinstance(body, bytes | bytearray):
        try:
            decoded = json.loads(body)
        except ValueError:
            return None
    if not isinstance(decoded, Mapping):
        return None
    error = decoded.get("error")
    return error if isinstance(error, Mapping) else None


def error_code(raw: Any) -> int | str | None:
    """An error object's ``code``: an int when it is one (also spelt as digits)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.strip():
        text = raw.strip()
        return int(text) if text.isdigit() else text
    return None


def first_text(mapping: Mapping[str, Any], *keys: str) -> str | None:
    """The first of ``keys`` whose value is a non-blank string, stripped."""
    for key in keys:
        value = mapping.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def describe_body(body: bytes | Mapping[str, Any] | None) -> str:
    """A body without an error object, quoted briefly for an error message."""
    if body is None or body == b"":
        return "with no body"
    if isinstance(body, Mapping):
        return f"without an error object: {snippet(json.dumps(body, default=str))}"
    text = bytes(body).decode("utf-8", errors="replace")
    try:
        json.loads(text)
    except ValueError:
        return f"with a non-JSON body: {snippet(text)}"
    return f"without an error object: {snippet(text)}"


def snippet(text: str) -> str:
    """``text`` on one line, cut to ``SNIPPET_CHARS``, quoted."""
    collapsed = " ".join(text.split())
    if len(collapsed) > SNIPPET_CHARS:
        collapsed = collapsed[:SNIPPET_CHARS] + "..."
    return repr(collapsed)


def _describe(exc: BaseException) -> str:
    # TimeoutError() has an empty message; the class name is the useful part.
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
