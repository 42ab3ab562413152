"""Pacing (DESIGN.md invariant 7) and retry delays (invariant 8), on a fake clock."""

from __future__ import annotations

import asyncio
import random

import pytest

from wahub.domain.errors import RetryableProviderError
from wahub.pipeline import pacing
from wahub.pipeline.backoff import PAIR_LIMIT_CODE, retry_delay
from wahub.pipeline.pacing import PairLimiter, TokenBucket
from wahub.providers.cloudapi.errors import classify_error


class FakeClock:
    """Stands in for the ``time`` module inside ``wahub.pipeline.pacing``."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(pacing, "time", fake)
    return fake


# --- TokenBucket -------------------------------------------------------------------------


def test_available_within_counts_saved_tokens_and_what_the_rate_adds(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=10, burst=10)

    assert bucket.available_within(1.5) == 25


def test_available_within_is_less_what_is_owed(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=10, burst=10)
    for _ in range(40):
        bucket.reserve()

    assert bucket.available_within(1.5) == -15, "30 owed beyond the burst, 15 coming"
    clock.advance(3.0)
    assert bucket.available_within(0) == 0, "the debt is paid off after 3 s"


def test_available_within_excludes_a_pause(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=10, burst=10)
    bucket.pause(1.0)

    assert bucket.available_within(1.5) == 15


@pytest.mark.usefixtures("clock")
def test_a_full_bucket_lets_a_burst_through_without_waiting() -> None:
    bucket = TokenBucket(rate=10, burst=5)

    assert [bucket.reserve() for _ in range(5)] == [0.0] * 5


@pytest.mark.usefixtures("clock")
def test_beyond_the_burst_each_reservation_waits_one_more_interval() -> None:
    bucket = TokenBucket(rate=4, burst=2)  # 0.25 s per token: exact in binary
    for _ in range(2):
        bucket.reserve()

    assert [bucket.reserve() for _ in range(3)] == [0.25, 0.5, 0.75], (
        "reservations queue up behind each other at 1/rate seconds"
    )


def test_tokens_refill_at_the_rate(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=4, burst=2)
    bucket.reserve()
    bucket.reserve()

    clock.advance(0.25)

    assert bucket.reserve() == 0.0, "one token came back after 1/rate seconds"
    assert bucket.reserve() == 0.25


def test_refill_never_exceeds_the_burst(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=4, burst=2)

    clock.advance(3600)

    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.25], "idle time saves at most burst"


def test_debt_is_paid_back_by_waiting(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=2, burst=1)
    waits = [bucket.reserve() for _ in range(4)]  # 0, 0.5, 1.0, 1.5

    clock.advance(waits[-1])

    assert bucket.reserve() == 0.5, "after sleeping off the debt the bucket is at steady rate"


@pytest.mark.usefixtures("clock")
def test_burst_below_one_is_raised_to_one() -> None:
    bucket = TokenBucket(rate=1, burst=0)

    assert bucket.burst == 1.0
    assert [bucket.reserve(), bucket.reserve()] == [0.0, 1.0]


@pytest.mark.usefixtures("clock")
def test_peek_wait_does_not_take_a_token() -> None:
    bucket = TokenBucket(rate=4, burst=1)

    assert bucket.peek_wait() == 0.0
    assert bucket.peek_wait() == 0.0
    bucket.reserve()
    assert bucket.peek_wait() == 0.25
    assert bucket.reserve() == 0.25, "peeking twice took nothing"


def test_pause_holds_every_reservation_until_it_ends(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=100, burst=10)

    bucket.pause(5)

    assert bucket.reserve() == 5.0
    assert bucket.peek_wait() == 5.0
    clock.advance(2)
    assert bucket.reserve() == 3.0
    clock.advance(3)
    assert bucket.reserve() == 0.0, "the pause is over and tokens were saved meanwhile"


def test_a_shorter_pause_does_not_cut_a_longer_one(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=100, burst=10)
    bucket.pause(10)
    clock.advance(1)

    bucket.pause(2)

    assert bucket.reserve() == 9.0


def test_a_pause_does_not_hide_a_longer_rate_wait(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=1, burst=1)
    for _ in range(6):
        bucket.reserve()  # 5 s of debt

    bucket.pause(2)

    assert bucket.reserve() == 6.0, "the longer of pause and rate wait wins"


async def test_acquire_sleeps_for_the_reserved_wait(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)  # the module pacing sleeps through
    bucket = TokenBucket(rate=4, burst=1)

    await bucket.acquire()
    await bucket.acquire()

    assert slept == [0.25], "the first token is free, the second waits 1/rate"


# --- PairLimiter -------------------------------------------------------------------------


@pytest.mark.parametrize("interval", [0, 0.0, -1])
def test_pair_limiter_without_an_interval_limits_nothing(interval: float) -> None:
    assert PairLimiter(burst=45, interval_seconds=interval).bucket("4915123456789") is None


@pytest.mark.usefixtures("clock")
def test_pair_limiter_gives_each_recipient_a_burst_then_one_per_interval() -> None:
    limiter = PairLimiter(burst=2, interval_seconds=8)
    bucket = limiter.bucket("alice")
    assert bucket is not None

    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 8.0]


@pytest.mark.usefixtures("clock")
def test_pair_limiter_keeps_one_bucket_per_recipient() -> None:
    limiter = PairLimiter(burst=1, interval_seconds=6)

    alice, bob = limiter.bucket("alice"), limiter.bucket("bob")

    assert alice is limiter.bucket("alice")
    assert alice is not bob
    assert alice is not None
    assert bob is not None
    alice.reserve()
    assert bob.reserve() == 0.0, "one recipient's sends do not slow another's"


@pytest.mark.usefixtures("clock")
def test_pair_limiter_forgets_the_least_recently_used_recipient() -> None:
    limiter = PairLimiter(burst=1, interval_seconds=6, max_recipients=2)
    alice = limiter.bucket("alice")
    limiter.bucket("bob")
    limiter.bucket("alice")  # alice is now more recent than bob

    limiter.bucket("carol")

    assert limiter.bucket("alice") is alice, "recently used buckets survive"
    assert len(limiter._buckets) == 2


# --- retry_delay -------------------------------------------------------------------------


def throttled(
    code: int | str | None = None, retry_after: float | None = None
) -> RetryableProviderError:
    return RetryableProviderError("slow down", provider_code=code, retry_after=retry_after)


@pytest.mark.parametrize(("retry_after", "expected"), [(7.0, 7.0), (0.0, 0.0), (-3.0, 0.0)])
def test_retry_after_is_honoured(retry_after: float, expected: float) -> None:
    delay = retry_delay(throttled(retry_after=retry_after), 3, base=1, cap=60)

    assert delay == expected


def test_retry_after_beyond_the_cap_still_wins() -> None:
    assert retry_delay(throttled(retry_after=300), 1, base=1, cap=60) == 300.0, (
        "the provider's own word beats our cap"
    )


def test_retry_after_wins_over_the_pair_limit_rule() -> None:
    assert retry_delay(throttled(PAIR_LIMIT_CODE, retry_after=2.5), 4, base=1, cap=600) == 2.5


@pytest.mark.parametrize(("attempt", "expected"), [(1, 1.0), (2, 4.0), (3, 16.0), (4, 64.0)])
def test_pair_limit_backs_off_four_to_the_x(attempt: int, expected: float) -> None:
    assert retry_delay(throttled(PAIR_LIMIT_CODE), attempt, base=1, cap=600) == expected


def test_pair_limit_backoff_is_capped() -> None:
    assert retry_delay(throttled(PAIR_LIMIT_CODE), 10, base=1, cap=120) == 120.0


def test_a_cloud_api_pair_limit_error_backs_off_four_to_the_x() -> None:
    error = classify_error(400, {"error": {"code": PAIR_LIMIT_CODE, "message": "pair rate"}})

    assert [retry_delay(error, n, base=1, cap=600) for n in (1, 2, 3)] == [1.0, 4.0, 16.0]


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 6])
def test_other_errors_back_off_exponentially_with_jitter_within_bounds(attempt: int) -> None:
    rng = random.Random(attempt)
    ceiling = min(30.0, 0.5 * 2 ** (attempt - 1))

    delays = [retry_delay(throttled(131000), attempt, base=0.5, cap=30, rng=rng) for _ in range(50)]

    assert all(ceiling / 2 <= d <= ceiling for d in delays), (
        f"attempt {attempt}: delays must lie in [{ceiling / 2}, {ceiling}], "
        f"got {min(delays)}..{max(delays)}"
    )
    assert len(set(delays)) > 1, "jitter spreads retries out"


def test_backoff_is_capped() -> None:
    delays = [
        retry_delay(throttled(), 50, base=1, cap=60, rng=random.Random(seed)) for seed in range(20)
    ]

    assert max(delays) <= 60.0
    assert min(delays) >= 30.0


def test_backoff_is_reproducible_with_a_seeded_random() -> None:
    def run() -> list[float]:
        rng = random.Random(42)
        return [retry_delay(throttled(), n, base=1, cap=60, rng=rng) for n in range(1, 8)]

    assert run() == run()


def test_backoff_grows_with_the_attempt() -> None:
    rng = random.Random(7)
    delays = [retry_delay(throttled(), n, base=1, cap=1000, rng=rng) for n in range(1, 9)]

    assert all(later > earlier for earlier, later in zip(delays, delays[2:], strict=False)), (
        f"two attempts later the floor has passed the previous ceiling: {delays}"
    )


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempt_below_one_counts_as_the_first(attempt: int) -> None:
    delay = retry_delay(throttled(), attempt, base=2, cap=60, rng=random.Random(1))

    assert 1.0 <= delay <= 2.0
