"""Local pacing for the channels a worker owns.

Because one worker owns a channel at a time (a lease on the channel row), pacing is a
plain in-memory token bucket: exact, with no round trip per message.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._paused_until = 0.0

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def reserve(self) -> float:
        """Take a token now, possibly going into debt; returns how long to wait before using it."""
        now = time.monotonic()
        self._refill(now)
        self._tokens -= 1.0
        wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
        return max(wait, self._paused_until - now)

    def peek_wait(self) -> float:
        """How long until a token would be free, without taking it."""
        now = time.monotonic()
        self._refill(now)
        wait = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate
        return max(wait, self._paused_until - now)

    def available_within(self, seconds: float) -> float:
        """How many tokens can be taken within ``seconds`` from now, less those already
        owed (negative when the debt outlasts that time)."""
        now = time.monotonic()
        self._refill(now)
        paused = max(0.0, self._paused_until - now)
        return self._tokens + self.rate * max(0.0, seconds - paused)

    def pause(self, seconds: float) -> None:
        """The provider said slow down (throughput error, Retry-After): hold everything."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    async def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)


class PairLimiter:
    """Meta's pair rate limit: about one message per ``interval`` seconds to one recipient,
    with bursts of up to ``burst`` borrowed from future quota."""

    def __init__(self, burst: int, interval_seconds: float, max_recipients: int = 100_000) -> None:
        self.burst = burst
        self.rate = 1.0 / interval_seconds if interval_seconds > 0 else float("inf")
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._max = max_recipients

    def bucket(self, recipient: str) -> TokenBucket | None:
        if self.rate == float("inf"):
            return None
        bucket = self._buckets.get(recipient)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst)
            self._buckets[recipient] = bucket
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(recipient)
        return bucket
