"""Opt-out keywords and auto-reply matching (domain/inbound.py): pure rules."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from wahub.domain.errors import ValidationError
from wahub.domain.inbound import (
    DEFAULT_OPT_OUT_KEYWORDS,
    is_whole_message_keyword,
    keyword_set,
    parse_business_hours,
    rule_matches,
    validate_rule,
)

OPT_OUT = keyword_set(DEFAULT_OPT_OUT_KEYWORDS)


@pytest.mark.parametrize("text", ["STOP", "stop", " Stop! ", "Arrêt", "ARRET", "baja", "Stopp."])
def test_an_opt_out_keyword_matches_in_any_case_and_accent(text: str) -> None:
    assert is_whole_message_keyword(text, OPT_OUT)


@pytest.mark.parametrize("text", ["don't stop", "stopwatch", "", None])
def test_only_the_whole_message_is_an_opt_out(text: str | None) -> None:
    assert not is_whole_message_keyword(text, OPT_OUT)


def at(local: str, zone: str = "Europe/Berlin") -> float:
    return datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(zone)).timestamp()


HOURS = {"timezone": "Europe/Berlin", "days": [0, 1, 2, 3, 4], "start": "09:00", "end": "17:00"}
OUTSIDE = {"match_kind": "outside_hours", "business_hours": HOURS}


@pytest.mark.parametrize(
    ("local", "outside"),
    [
        ("2025-03-03T09:00", False),  # Monday, opening time
        ("2025-03-03T16:59", False),
        ("2025-03-03T17:00", True),
        ("2025-03-03T08:59", True),
        ("2025-03-08T12:00", True),  # Saturday
    ],
)
def test_outside_hours_uses_the_rules_time_zone(local: str, outside: bool) -> None:
    assert rule_matches(OUTSIDE, text=None, at=at(local), first_message=False) is outside


def test_overnight_hours_belong_to_the_day_they_started() -> None:
    hours = parse_business_hours(
        {"timezone": "UTC", "days": [4], "start": "22:00", "end": "06:00"}, field="h"
    )

    assert hours.is_open(at("2025-03-07T23:00", "UTC"))  # Friday night
    assert hours.is_open(at("2025-03-08T05:00", "UTC"))  # Saturday morning, Friday's shift
    assert not hours.is_open(at("2025-03-07T05:00", "UTC"))  # Friday morning: Thursday's


def test_keywords_match_whole_words_only() -> None:
    rule = {"match_kind": "keyword", "pattern": "price, cost"}

    assert rule_matches(rule, text="What's the PRICE?", at=0, first_message=False)
    assert rule_matches(rule, text="cost", at=0, first_message=False)
    assert not rule_matches(rule, text="priceless", at=0, first_message=False)


@pytest.mark.parametrize(
    ("kind", "pattern", "hours", "field"),
    [
        ("sometimes", "x", None, "match_kind"),
        ("keyword", " ", None, "pattern"),
        ("regex", "(", None, "pattern"),
        ("outside_hours", None, None, "business_hours"),
        ("outside_hours", None, {**HOURS, "timezone": "Mars/Olympus"}, "business_hours.timezone"),
        ("outside_hours", None, {**HOURS, "start": "9am"}, "business_hours.start"),
        ("outside_hours", None, {**HOURS, "days": [7]}, "business_hours.days"),
    ],
)
def test_a_rule_that_could_never_run_is_refused_naming_the_field(
    kind: str, pattern: str | None, hours: dict[str, object] | None, field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_rule(kind, pattern, hours)

    assert caught.value.details["field"] == field
