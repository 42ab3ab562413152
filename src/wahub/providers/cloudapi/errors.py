"""Turning Meta Cloud API error responses into wahub provider errors.

Meta publishes no "retryable" flag and recommends branching on ``error.code`` and
``error_data.details``, not on titles, subcodes or the HTTP status (130429, a throttle,
arrives as HTTP 400). So the code decides first; the HTTP status only decides for codes
we do not know and for bodies that are not Graph API errors at all (an HTML page from a
proxy or load balancer).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from wahub.domain.errors import (
    PermanentProviderError,
    ProviderError,
    RetryableProviderError,
)
from wahub.providers.http import (
    describe_body,
    error_code,
    error_for_status,
    error_object,
    first_text,
    retry_after,
)

__all__ = ["classify_error"]


@dataclass(frozen=True, slots=True)
class _Rule:
    retryable: bool
    # Delay to suggest when the response carries no Retry-After header.
    default_retry_after: float | None = None
    # Appended to the message so whoever reads the failure knows what to do next.
    hint: str | None = None


_RETRY: Final = _Rule(retryable=True)
_GIVE_UP: Final = _Rule(retryable=False)

# PROVIDERS.md 1.3. Codes not listed here are classified by HTTP status.
_RULES: Final[Mapping[int, _Rule]] = {
    # Throttling: app-level, WABA-level and phone-number-level rate limits.
    4: _RETRY,
    80007: _RETRY,
    130429: _RETRY,
    # Pair rate limit (about one message every 6 s to the same user). Meta's guidance is
    # to wait 4^X seconds on the X-th retry: the pipeline's backoff does that, so no
    # fixed retry_after here (it would override the growing schedule).
    131056: _RETRY,
    # Unknown error, API unknown, service temporarily unavailable: transient.
    1: _RETRY,
    2: _RETRY,
    131000: _RETRY,
    131016: _RETRY,
    # Maintenance mode, e.g. during the automatic throughput upgrade (about a minute).
    131057: _RETRY,
    # Spam rate limit: the number is restricted because earlier messages were blocked or
    # flagged. The message itself is fine and may go out once quality recovers, so it is
    # not permanent; but the restriction lasts hours and every early retry is one more
    # refused send on a number already under scrutiny, so wait an hour, not seconds.
    131048: _Rule(retryable=True, default_retry_after=3600.0),
    131047: _Rule(
        retryable=False,
        hint=(
            "More than 24 h since the user last wrote (outside the customer-service "
            "window): send an approved template instead"
        ),
    ),
    131026: _GIVE_UP,
    131049: _Rule(
        retryable=False,
        hint="Meta limits marketing templates per user: do not resend for at least 24 h",
    ),
    131051: _GIVE_UP,
    132000: _GIVE_UP,
    132001: _GIVE_UP,
    100: _GIVE_UP,
    190: _Rule(
        retryable=False,
        hint="The access token is expired or invalid: replace the token, then resend",
    ),
    368: _Rule(
        retryable=False,
        hint="The account is temporarily blocked for policy violations",
    ),
    10: _Rule(retryable=False, hint="The app lacks the permission for this call"),
}

# 200-299 are all permission errors (Meta's table maps the whole range to HTTP 403).
_PERMISSION_CODES: Final = range(200, 300)
_PERMISSION_RULE: Final = _Rule(retryable=False, hint="The app lacks the permission for this call")

# Graph API messages often start with the code again: "(#130429) Rate limit hit".
_CODE_PREFIX: Final = re.compile(r"^\(#\d+\)\s*")


def classify_error(
    http_status: int,
    body: bytes | Mapping[str, Any] | None,
    headers: Mapping[str, str] | None = None,
    *,
    now: float | None = None,
) -> ProviderError:
    """The provider error a failed Cloud API call stands for. Never raises.

    ``body`` is the raw response body, or the already decoded JSON object. A Graph API
    error object (``{"error": {"code": ...}}``) is classified by its ``code`` (see
    ``_RULES``); an unknown code, or a body that is not a Graph API error (HTML from a
    proxy, empty, other JSON), is classified by ``http_status``: 5xx, 408 and 429 are
    retryable, everything else is permanent.

    The result is a ``RetryableProviderError`` or a ``PermanentProviderError`` with
    ``http_status``, ``provider_code`` (Meta's code, when there is one), ``retry_after``
    (the ``Retry-After`` header in seconds, else a per-code default, else ``None``) and
    ``details`` (``fbtrace_id``, ``error_subcode``, ``type``, ``error_details`` when
    present). ``now`` (unix seconds) is the clock used for an HTTP-date ``Retry-After``.
    """
    delay = retry_after(headers, now=now)
    error = error_object(body)
    if error is None:
        return error_for_status(
            http_status,
            f"Cloud API HTTP {http_status} {describe_body(body)}",
            retry_after=delay,
        )

    code = error_code(error.get("code"))
    rule = _rule_for(code)
    message = _error_message(code, error, rule)
    details = _error_details(error)
    if rule is None:
        return error_for_status(http_status, message, code=code, retry_after=delay, details=details)
    error_class = RetryableProviderError if rule.retryable else PermanentProviderError
    return error_class(
        message,
        provider_code=code,
        http_status=http_status,
        retry_after=delay if delay is not None else rule.default_retry_after,
        details=details,
    )


def _rule_for(code: int | str | None) -> _Rule | None:
    if not isinstance(code, int):
        return None
    if code in _PERMISSION_CODES:
        return _PERMISSION_RULE
    return _RULES.get(code)


def _error_message(code: int | str | None, error: Mapping[str, Any], rule: _Rule | None) -> str:
    """E.g. ``Cloud API error 131026: Message undeliverable (details: ...)``."""
    text = first_text(error, "message", "error_user_title", "title", "type")
    text = _CODE_PREFIX.sub("", text) if text else "no message"
    message = f"Cloud API error {code if code is not None else '(no code)'}: {text}"
    details = _error_data_details(error)
    if details and details != text:
        message += f" (details: {details})"
    if rule is not None and rule.hint:
        message += f". {rule.hint}"
    return message


def _error_details(error: Mapping[str, Any]) -> dict[str, Any]:
    details: dict[str, Any] = {}
    for key in ("fbtrace_id", "error_subcode", "type"):
        if error.get(key) is not None:
            details[key] = error[key]
    error_details = _error_data_details(error)
    if error_details:
        details["error_details"] = error_details
    return details


def _error_data_details(error: Mapping[str, Any]) -> str | None:
    # error_data is documented as an object with "details", but shows up as a bare string.
    error_data = error.get("error_data")
    if isinstance(error_data, str):
        return error_data.strip() or None
    if isinstance(error_data, Mapping):
        details = error_data.get("details")
        if isinstance(details, str) and details.strip():
            return details.strip()
    return None
