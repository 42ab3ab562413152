"""classify_error: Cloud API error responses become retryable or permanent errors.

The table follows PROVIDERS.md 1.3: the error code decides, the HTTP status only decides
for unknown codes and for bodies that are not Graph API errors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import pytest

from wahub.domain.errors import (
    PermanentProviderError,
    ProviderError,
    RetryableProviderError,
)
from wahub.providers.cloudapi.errors import classify_error
from wahub.providers.http import parse_retry_after

NOW = 1_700_000_000.0


def graph_error(
    code: Any,
    message: str = "Something failed",
    *,
    error_data: Any = None,
    **extra: Any,
) -> dict[str, Any]:
    """A Graph API error body shaped like Meta's 130429 example."""
    error: dict[str, Any] = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
    }
    if error_data is not None:
        error["error_data"] = error_data
    error.update(extra)
    return {"error": error}


def encoded(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


@dataclass(frozen=True)
class Case:
    id: str
    http_status: int
    body: bytes | dict[str, Any] | None
    expected: type[ProviderError]
    provider_code: int | str | None = None
    retry_after: float | None = None
    headers: dict[str, str] | None = None


def by_code(code: int, http_status: int, expected: type[ProviderError], **kw: Any) -> Case:
    return Case(
        f"code-{code}-http-{http_status}",
        http_status,
        encoded(graph_error(code)),
        expected,
        provider_code=code,
        **kw,
    )


R, P = RetryableProviderError, PermanentProviderError

CASES = [
    # Documented retryable codes, each with the HTTP status Meta is known to use.
    by_code(4, 429, R),
    by_code(80007, 400, R),
    by_code(130429, 400, R),
    # No fixed delay: the pipeline grows it 4^X (Meta guidance), see pipeline/backoff.py.
    by_code(131056, 400, R, retry_after=None),
    by_code(131000, 500, R),
    by_code(1, 500, R),
    by_code(2, 503, R),
    by_code(131016, 503, R),
    by_code(131057, 400, R),
    by_code(131048, 400, R, retry_after=3600.0),
    # Documented permanent codes.
    by_code(131047, 400, P),
    by_code(131026, 400, P),
    by_code(131049, 400, P),
    by_code(131051, 400, P),
    by_code(132000, 400, P),
    by_code(132001, 404, P),
    by_code(100, 400, P),
    by_code(190, 401, P),
    by_code(368, 403, P),
    by_code(10, 403, P),
    by_code(200, 403, P),
    by_code(250, 403, P),
    by_code(299, 403, P),
    # The code wins over the HTTP status, both ways.
    by_code(131026, 500, P),
    by_code(130429, 403, R),
    # Unknown codes fall back to the HTTP status.
    by_code(999_999, 500, R),
    by_code(999_999, 503, R),
    by_code(999_999, 429, R),
    by_code(999_999, 408, R),
    by_code(999_999, 400, P),
    by_code(999_999, 403, P),
    by_code(300, 400, P),
    # Codes sent as strings still match.
    Case("code-as-string", 400, encoded(graph_error("131026")), P, provider_code=131026),
    Case("non-numeric-code", 500, encoded(graph_error("OOPS")), R, provider_code="OOPS"),
    Case("no-code-4xx", 400, encoded({"error": {"message": "bad"}}), P),
    # The body may come already decoded.
    Case("decoded-body", 400, graph_error(130429), R, provider_code=130429),
    # Bodies that are not Graph API errors.
    Case("html-502", 502, b"<html><body>Bad Gateway</body></html>", R),
    Case("html-404", 404, b"<html>Not Found</html>", P),
    Case("empty-503", 503, b"", R),
    Case("none-500", 500, None, R),
    Case("json-without-error-500", 500, b'{"status": "down"}', R),
    Case("json-list-400", 400, b"[1, 2]", P),
    Case("error-is-a-string", 400, b'{"error": "nope"}', P),
    Case("invalid-utf8-502", 502, b"\xff\xfe garbage", R),
    # Retry-After is honoured, and beats the per-code default.
    Case("retry-after-429", 429, b"", R, retry_after=30.0, headers={"Retry-After": "30"}),
    Case(
        "retry-after-overrides-default",
        400,
        encoded(graph_error(131056)),
        R,
        provider_code=131056,
        retry_after=12.0,
        headers={"retry-after": "12"},
    ),
    Case(
        "retry-after-date",
        503,
        b"",
        R,
        retry_after=90.0,
        headers={"Retry-After": formatdate(NOW + 90, usegmt=True)},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_classification_table(case: Case) -> None:
    error = classify_error(case.http_status, case.body, case.headers, now=NOW)

    assert type(error) is case.expected, f"{case.id}: {error!r} ({error.message})"
    assert error.http_status == case.http_status
    assert error.provider_code == case.provider_code
    assert error.retry_after == case.retry_after


def test_message_names_the_code_the_meta_message_and_the_details() -> None:
    body = graph_error(
        131026,
        "Message undeliverable",
        error_data={"messaging_product": "whatsapp", "details": "Recipient is not on WhatsApp"},
    )

    error = classify_error(400, encoded(body), None)

    assert error.message == (
        "Cloud API error 131026: Message undeliverable (details: Recipient is not on WhatsApp)"
    )


def test_message_drops_the_repeated_code_prefix() -> None:
    error = classify_error(400, graph_error(130429, "(#130429) Rate limit hit"), None)

    assert error.message.startswith("Cloud API error 130429: Rate limit hit")


def test_error_data_as_a_string_is_used_as_details() -> None:
    body = graph_error(100, "Invalid parameter", error_data="Param template.name is required")

    error = classify_error(400, encoded(body), None)

    assert "(details: Param template.name is required)" in error.message
    assert error.details["error_details"] == "Param template.name is required"


def test_meta_130429_example_is_retryable_with_its_trace_id_and_subcode() -> None:
    body = {
        "error": {
            "message": "(#130429) Rate limit hit",
            "type": "OAuthException",
            "code": 130429,
            "error_data": {
                "messaging_product": "whatsapp",
                "details": "Message failed to send because there were too many messages",
            },
            "error_subcode": 2494055,
            "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
        }
    }

    error = classify_error(400, encoded(body), None)

    assert isinstance(error, RetryableProviderError)
    assert error.details == {
        "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
        "error_subcode": 2494055,
        "type": "OAuthException",
        "error_details": "Message failed to send because there were too many messages",
    }


def test_outside_the_24h_window_says_to_send_a_template() -> None:
    error = classify_error(400, graph_error(131047, "Re-engagement message"), None)

    assert "template" in error.message


def test_expired_token_says_to_replace_the_token() -> None:
    error = classify_error(401, graph_error(190, "Error validating access token"), None)

    assert isinstance(error, PermanentProviderError)
    assert "replace the token" in error.message


def test_non_json_body_gives_a_readable_message_with_a_snippet() -> None:
    html = b"<html>\n  <head><title>502 Bad Gateway</title></head>\n" + b"x" * 500 + b"</html>"

    error = classify_error(502, html, None)

    assert error.message.startswith("Cloud API HTTP 502 with a non-JSON body: '<html> <head>")
    assert len(error.message) < 300


def test_unknown_code_keeps_meta_message_and_code() -> None:
    error = classify_error(500, graph_error(42, "Something new"), None)

    assert error.message == "Cloud API error 42: Something new"
    assert error.provider_code == 42


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("-3", None),
        ("nan", None),
        ("soon", None),
        (formatdate(NOW + 60, usegmt=True), 60.0),
        (formatdate(NOW - 60, usegmt=True), 0.0),
        ("Tue, 14 Nov 2023 22:14:20", 60.0),  # no zone: read as GMT
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected
