"""When to try a failed send again."""

from __future__ import annotations

import random

from wahub.domain.backoff import backoff
from wahub.domain.errors import ProviderError

PAIR_LIMIT_CODE = 131056


def retry_delay(
    error: ProviderError,
    attempt: int,
    *,
    base: float,
    cap: float,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before attempt ``attempt + 1``.

    The provider's own word wins (``Retry-After``); Meta's guidance for the pair rate
    limit is 4^X seconds; everything else is exponential backoff with "equal jitter" (between half
    the step and the step), so a crowd of retries does not come back in lock-step.
    """
    if error.retry_after is not None:
        return float(min(max(error.retry_after, 0.0), max(cap, error.retry_after)))
    if error.provider_code == PAIR_LIMIT_CODE:
        return float(min(cap, 4 ** max(attempt - 1, 0)))
    return backoff(attempt, base=base, cap=cap, rng=rng)
