"""The status machine (DESIGN.md invariant 3): forward-only, order- and duplicate-blind."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wahub.domain.status import FAILABLE, FINAL, RANK, Status, advance, fold, is_final

S = Status
PROVIDER = [S.SENT, S.DELIVERED, S.READ, S.FAILED]
# Where a message can be when provider reports start arriving about it.
BEFORE_PROVIDER = [S.QUEUED, S.SENDING, S.UNCERTAIN, S.SENT]

observations = st.lists(st.sampled_from(PROVIDER), max_size=12)
starts = st.sampled_from(BEFORE_PROVIDER)
any_status = st.sampled_from(list(Status))


def expected_final(start: Status, seen: list[Status]) -> Status:
    """The specification, written independently of ``advance``: the best delivery proof
    wins; otherwise a failure; otherwise the furthest of start and sent."""
    if S.READ in seen:
        return S.READ
    if S.DELIVERED in seen:
        return S.DELIVERED
    if S.FAILED in seen:
        return S.FAILED
    if S.SENT in seen and RANK[S.SENT] > RANK[start]:
        return S.SENT
    return start


# --- properties --------------------------------------------------------------------------


@given(start=starts, seen=observations, data=st.data())
def test_any_permutation_folds_to_the_same_status(
    start: Status, seen: list[Status], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(seen), label="shuffled")

    assert fold(start, shuffled) == fold(start, seen), (
        f"from {start}: {seen} gives {fold(start, seen)} but {shuffled} gives "
        f"{fold(start, shuffled)}"
    )


@given(start=starts, seen=observations)
def test_fold_matches_the_specification(start: Status, seen: list[Status]) -> None:
    assert fold(start, seen) == expected_final(start, seen), f"from {start} after {seen}"


@given(start=starts, seen=observations)
def test_duplicated_observations_are_idempotent(start: Status, seen: list[Status]) -> None:
    assert fold(start, seen + seen) == fold(start, seen)


@given(start=starts, seen=observations, data=st.data())
def test_duplicates_anywhere_change_nothing(
    start: Status, seen: list[Status], data: st.DataObject
) -> None:
    with_repeats = seen + data.draw(
        st.lists(st.sampled_from(seen), max_size=6) if seen else st.just([])
    )
    shuffled = data.draw(st.permutations(with_repeats))

    assert fold(start, shuffled) == fold(start, seen)


@given(current=any_status, observed=any_status)
def test_status_never_moves_back_except_failing_a_failable_status(
    current: Status, observed: Status
) -> None:
    new = advance(current, observed)

    if new == S.FAILED and current != S.FAILED:
        assert current in FAILABLE, f"{current} must not become failed"
    elif current == S.FAILED:
        assert new in (S.FAILED, S.DELIVERED, S.READ), "only a delivery proof leaves failed"
    else:
        assert RANK[new] >= RANK[current], f"{current} moved back to {new} on {observed}"


@given(start=starts, seen=observations)
def test_delivered_or_read_is_never_replaced_by_failed(start: Status, seen: list[Status]) -> None:
    status = start
    for observed in seen:
        previous, status = status, advance(status, observed)
        if previous in (S.DELIVERED, S.READ):
            assert status in (S.DELIVERED, S.READ), f"{previous} became {status} on {observed}"


@given(current=any_status, observed=any_status)
def test_advance_returns_either_the_current_or_the_observed_status(
    current: Status, observed: Status
) -> None:
    assert advance(current, observed) in (current, observed)


# --- table -------------------------------------------------------------------------------

ADVANCE_TABLE = [
    # forward moves
    (S.QUEUED, S.SENDING, S.SENDING),
    (S.SENDING, S.SENT, S.SENT),
    (S.UNCERTAIN, S.SENT, S.SENT),
    (S.SENT, S.DELIVERED, S.DELIVERED),
    (S.DELIVERED, S.READ, S.READ),
    (S.QUEUED, S.READ, S.READ),
    # never backwards
    (S.READ, S.DELIVERED, S.READ),
    (S.READ, S.SENT, S.READ),
    (S.DELIVERED, S.SENT, S.DELIVERED),
    (S.SENT, S.QUEUED, S.SENT),
    # sending and uncertain share a rank: neither replaces the other
    (S.SENDING, S.UNCERTAIN, S.SENDING),
    (S.UNCERTAIN, S.SENDING, S.UNCERTAIN),
    # failed replaces what precedes delivery
    (S.QUEUED, S.FAILED, S.FAILED),
    (S.SENDING, S.FAILED, S.FAILED),
    (S.UNCERTAIN, S.FAILED, S.FAILED),
    (S.SENT, S.FAILED, S.FAILED),
    # ...but not a delivery (multi-device: delivered to one device is delivered)
    (S.DELIVERED, S.FAILED, S.DELIVERED),
    (S.READ, S.FAILED, S.READ),
    # out of failed only by a delivery proof
    (S.FAILED, S.DELIVERED, S.DELIVERED),
    (S.FAILED, S.READ, S.READ),
    (S.FAILED, S.SENT, S.FAILED),
    (S.FAILED, S.SENDING, S.FAILED),
    (S.FAILED, S.QUEUED, S.FAILED),
    # the same status again
    (S.SENT, S.SENT, S.SENT),
    (S.FAILED, S.FAILED, S.FAILED),
]


@pytest.mark.parametrize(
    ("current", "observed", "expected"),
    ADVANCE_TABLE,
    ids=[f"{c}+{o}->{e}" for c, o, e in ADVANCE_TABLE],
)
def test_advance_table(current: Status, observed: Status, expected: Status) -> None:
    assert advance(current, observed) == expected


def test_fold_of_nothing_is_the_start() -> None:
    assert fold(S.SENDING, []) == S.SENDING


def test_fold_accepts_any_iterable() -> None:
    assert fold(S.SENT, iter([S.READ, S.DELIVERED])) == S.READ


@pytest.mark.parametrize("status", list(Status))
def test_final_statuses_are_delivered_read_and_failed(status: Status) -> None:
    assert is_final(status) == (status in {S.DELIVERED, S.READ, S.FAILED})
    assert (status in FINAL) == is_final(status)


def test_every_status_but_failed_has_a_rank() -> None:
    assert set(RANK) == set(Status) - {S.FAILED}
    assert RANK[S.SENDING] == RANK[S.UNCERTAIN]
    assert [RANK[s] for s in (S.QUEUED, S.SENDING, S.SENT, S.DELIVERED, S.READ)] == [0, 1, 2, 3, 4]
