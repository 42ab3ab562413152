"""Exponential backoff with equal jitter: the one retry schedule every queue uses
(sends, replication shippers, event deliveries to subscribers)."""

from __future__ import annotations

import random


def backoff(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds before try ``attempt + 1``: ``base * 2^(attempt-1)`` capped at ``cap``,
    then a uniform draw between half of that step and the step ("equal jitter"), so a
    crowd of retries does not come back in lock-step yet never retries at once."""
    step: float = min(cap, base * 2.0 ** max(attempt - 1, 0))
    return step / 2 + (rng or random.Random()).uniform(0, step / 2)
