"""One signed POST and what its answer means.

- 2xx: delivered.
- 410 Gone: the receiver says this endpoint is gone for good (a subscription pauses).
- Any other 4xx but 408, 425 and 429: refused (this request will never be accepted; a
  dead letter with the receiver's answer).
- Timeouts, connection errors, 408, 425, 429 and 5xx: retry later (backoff).

The session's timeout bounds every attempt, so a receiver that never answers costs one
timeout and a retry, never a hang.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

import aiohttp

RETRYABLE_4XX = frozenset({408, 425, 429})
ANSWER_KEPT_CHARS = 500


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    REFUSED = "refused"
    GONE = "gone"
    RETRY = "retry"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One POST: its outcome, the HTTP status (None when no answer came), how long it
    took and, unless delivered, why (the receiver's answer or the transport error)."""

    outcome: Outcome
    status_code: int | None
    latency_ms: float
    reason: str | None = None


def classify(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if status == 410:
        return Outcome.GONE
    if 400 <= status < 500 and status not in RETRYABLE_4XX:
        return Outcome.REFUSED
    return Outcome.RETRY


async def post_signed(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> Attempt:
    """POST ``body`` with ``headers`` (already signed) to ``url``; never raises for a
    receiver's failure, which is an ``Attempt`` with ``Outcome.RETRY``."""
    started = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as answer:
            status = answer.status
            text = "" if status < 300 else (await answer.text(errors="replace"))
    # ValueError: a URL the HTTP client cannot use (stored before a check existed).
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        return Attempt(
            Outcome.RETRY, None, _ms(started), f"{type(exc).__name__}: {exc}".strip(": ")
        )
    outcome = classify(status)
    reason: str | None = None
    if outcome is not Outcome.DELIVERED:
        reason = f"HTTP {status}: {text[:ANSWER_KEPT_CHARS]}".strip(": ")
    return Attempt(outcome, status, _ms(started), reason)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)
