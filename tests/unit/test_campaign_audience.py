"""The audience CSV, the split across templates and the campaign states, without I/O."""

from __future__ import annotations

import pytest

from wahub.domain.campaigns import (
    TemplateSpec,
    assign_templates,
    parse_audience_csv,
    parse_templates,
    transition,
)
from wahub.domain.errors import ConflictError, ValidationError


def test_each_bad_row_is_reported_with_its_line_and_the_good_rows_are_kept() -> None:
    text = (
        "phone,first_name,city\n"
        "+49 151 10000001,Ana,Berlin\n"
        "12,Bob,Paris\n"
        "+4915110000002,,Rome\n"
        "0049 151 10000001,Ana,Berlin\n"
        "+4915110000003,Cem\n"
        "\n"
        "+4915110000004,Dee,Oslo\n"
    )

    report = parse_audience_csv(text, ["first_name"])

    assert [(r.line, r.phone) for r in report.rows] == [
        (2, "+4915110000001"),
        (8, "+4915110000004"),
    ]
    assert report.rows[0].variables == {"first_name": "Ana", "city": "Berlin"}
    assert [(e.line, e.code) for e in report.errors] == [
        (3, "bad_phone"),
        (4, "missing_variables"),
        (5, "duplicate"),
        (6, "bad_row"),
    ]
    assert "line 2" in report.errors[2].message, "a duplicate names the line it repeats"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("number,first_name", "no 'phone' column"),
        ("phone,phone,first_name", "columns named twice: phone"),
        ("phone,city", "missing columns the templates need: first_name"),
    ],
)
def test_a_bad_header_makes_the_file_unusable(header: str, reason: str) -> None:
    report = parse_audience_csv(f"{header}\n+4915110000001,a,b\n", ["first_name"])

    assert report.rows == []
    assert [(e.line, e.code) for e in report.errors] == [(1, "bad_header")]
    assert reason in report.errors[0].message
    with pytest.raises(ValidationError, match="no usable recipient"):
        report.refuse_if_empty()


def test_the_split_follows_the_weights_in_every_prefix() -> None:
    specs = [TemplateSpec("a", "en", 2.0), TemplateSpec("b", "en", 1.0)]

    chosen = assign_templates(specs, 9)

    assert chosen.count(0) == 6
    assert chosen.count(1) == 3
    assert chosen[:3].count(0) == 2, "a campaign stopped early has the split too"


def test_templates_are_validated_and_one_name_means_one_template() -> None:
    with pytest.raises(ValidationError, match="listed twice"):
        parse_templates([{"name": "a", "language": "en"}, {"name": "a", "language": "de"}])
    with pytest.raises(ValidationError, match="weight"):
        parse_templates([{"name": "a", "language": "en", "weight": 0}])
    (spec,) = parse_templates([{"name": "a", "language": "en", "parameters": ["x"]}])
    assert spec.content({"x": "1"})["template"]["components"][0]["parameters"] == [
        {"type": "text", "text": "1"}
    ]


def test_state_changes() -> None:
    assert transition("scheduled", "start") == "running"
    assert transition("running", "start") is None, "a second start is a no-op"
    assert transition("paused", "resume") == "running"
    with pytest.raises(ConflictError):
        transition("completed", "start")
    with pytest.raises(ConflictError):
        transition("cancelled", "resume")


def test_a_national_phone_without_a_default_region_says_a_country_code_is_needed() -> None:
    report = parse_audience_csv("phone,first_name\n0151 10000001,Ana\n", ["first_name"])

    [error] = report.errors
    assert error.code == "bad_phone"
    assert error.message.startswith("'0151 10000001' has no country code"), error.message
    assert "WAHUB_DEFAULT_REGION" in error.message
