"""The sandbox's default WHAPI directory keeps the properties its docstring promises, and
replacement directories are checked."""

from __future__ import annotations

from typing import Any

import phonenumbers
import pytest

from wahub.providers.sandbox import SandboxConfig
from wahub.providers.sandbox.whapi_directory import (
    DEFAULT_GROUP_COUNT,
    GROUP_ID_RE,
    HUB_PERSON,
    LEFT_GROUP_INDICES,
    LID_EVERY,
    OLD_STYLE_ID_INDICES,
    check_groups,
    default_directory,
    is_participant,
    lid_for,
    people,
)

OWN = SandboxConfig().whapi_own_phone


@pytest.fixture(scope="module")
def groups() -> list[dict[str, Any]]:
    return default_directory(OWN)


def test_every_pooled_number_is_a_valid_phone_number() -> None:
    pool = people()
    assert len(set(pool)) == len(pool) == 400
    for digits in pool:
        assert phonenumbers.is_valid_number(phonenumbers.parse("+" + digits)), digits


def test_own_number_is_valid() -> None:
    assert phonenumbers.is_valid_number(phonenumbers.parse("+" + OWN))


def test_directory_is_deterministic_and_a_fresh_copy(groups: list[dict[str, Any]]) -> None:
    again = default_directory(OWN)
    assert again == groups
    again[0]["name"] = "changed"
    assert default_directory(OWN)[0]["name"] != "changed"


def test_shape_ids_and_order(groups: list[dict[str, Any]]) -> None:
    assert len(groups) == DEFAULT_GROUP_COUNT
    ids = [g["id"] for g in groups]
    assert len(set(ids)) == len(ids)
    assert all(GROUP_ID_RE.match(i) for i in ids)
    for index, group in enumerate(groups):
        old_style = "-" in group["id"]
        assert old_style == (index in OLD_STYLE_ID_INDICES)
        assert group["type"] == "group"
        assert group["participants_count"] == len(group["participants"])
        assert group["created_at"] < group["timestamp"]
    timestamps = [g["timestamp"] for g in groups]
    assert timestamps == sorted(timestamps, reverse=True)


def test_sizes_ranks_and_membership(groups: list[dict[str, Any]]) -> None:
    hub_phone = people()[HUB_PERSON]
    sizes = []
    for index, group in enumerate(groups):
        participants = group["participants"]
        ours = is_participant(group, OWN)
        assert ours == (index not in LEFT_GROUP_INDICES)
        others = len(participants) - (1 if ours else 0)
        sizes.append(others)
        ranks = [p["rank"] for p in participants]
        assert ranks.count("creator") == 1
        assert ranks[0] == "creator"
        assert ranks.count("admin") >= 1
        assert ranks == sorted(ranks, key=("creator", "admin", "member").index)
        creator = participants[0]["id"]
        assert group["created_by"] == creator
        assert not creator.endswith("@lid")
        if index % 10 == 0 and index not in LEFT_GROUP_INDICES:
            assert creator == OWN
        if index % 4 == 0:
            hub = [p for p in participants if p["id"] == hub_phone]
            assert len(hub) == 1
            assert hub[0]["rank"] in ("admin", "creator")
        assert group.get("read_only", False) == (not ours)
    # Participants besides our own number: 3 to 40, both ends present.
    assert min(sizes) == 3
    assert max(sizes) == 40


def test_hidden_people_appear_only_by_lid(groups: list[dict[str, Any]]) -> None:
    pool = people()
    hidden = {pool[i] for i in range(len(pool)) if i % LID_EVERY == LID_EVERY - 1}
    lids = {lid_for(phone): phone for phone in hidden}
    seen_lids = 0
    for group in groups:
        for participant in group["participants"]:
            ident = participant["id"]
            assert ident not in hidden
            if ident.endswith("@lid"):
                assert ident in lids
                seen_lids += 1
            else:
                assert ident.isdigit()
    assert seen_lids > 50


def test_lid_for_is_stable_and_ignores_spelling() -> None:
    lid = lid_for("4915112345678")
    assert lid == lid_for("+49 151 1234 5678")
    assert lid.endswith("@lid")
    assert len(lid.removesuffix("@lid")) == 14
    assert lid != lid_for("4915112345679")


def test_check_groups_fills_defaults_and_copies() -> None:
    raw = [{"id": "120363000000000001@g.us", "name": "A", "participants": []}]
    checked = check_groups(raw)
    assert checked[0]["type"] == "group"
    assert checked[0]["participants_count"] == 0
    checked[0]["name"] = "B"
    assert raw[0]["name"] == "A"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"id": "x"}, "JSON list"),
        (["x"], r"groups\[0\] must be an object"),
        ([{"id": "123@g.us", "name": "A", "participants": []}], r"groups\[0\]\.id"),
        ([{"id": "120363000000000001@g.us", "participants": []}], r"\.name"),
        ([{"id": "120363000000000001@g.us", "name": "A"}], r"\.participants must"),
        (
            [{"id": "120363000000000001@g.us", "name": "A", "participants": [{"id": "1"}]}],
            r"participants\[0\]\.rank",
        ),
        (
            [{"id": "120363000000000001@g.us", "name": "A", "participants": [{"rank": "admin"}]}],
            r"participants\[0\]\.id",
        ),
        (
            [
                {"id": "120363000000000001@g.us", "name": "A", "participants": []},
                {"id": "120363000000000001@g.us", "name": "B", "participants": []},
            ],
            "appears twice",
        ),
    ],
)
def test_check_groups_names_the_offending_field(raw: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_groups(raw)


@pytest.mark.parametrize(
    ("knob", "value"),
    [
        ("whapi_own_phone", "+14155550100"),
        ("whapi_own_phone", "123"),
        ("whapi_rate_limit", 0),
        ("whapi_rate_window_s", 0),
        ("whapi_fail_groups", "120363000000000001@g.us"),
        ("whapi_fail_groups", ["4915112345678"]),
        ("whapi_fail_list", 1),
        ("whapi_latency_ms", -1),
        ("whapi_token", ""),
    ],
)
def test_whapi_knobs_are_validated(knob: str, value: Any) -> None:
    with pytest.raises(ValueError, match=knob):
        SandboxConfig().update({knob: value})


def test_whapi_token_is_masked_and_fail_groups_listed() -> None:
    config = SandboxConfig(whapi_fail_groups=("120363000000000001@g.us",))
    data = config.to_dict()
    assert data["whapi_token"] == "***"
    assert data["whapi_fail_groups"] == ["120363000000000001@g.us"]
