"""Cloud API webhooks: handshake, signature and status parsing (PROVIDERS.md 1.4)."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from wahub.domain.errors import ValidationError
from wahub.domain.status import Status
from wahub.providers.base import ProviderErrorInfo, StatusUpdate
from wahub.providers.cloudapi.webhooks import parse_statuses, verify_handshake, verify_signature

APP_SECRET = "app-secret-123"
BODY = b'{"object":"whatsapp_business_account","entry":[]}'


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- signature ---------------------------------------------------------------------------


def test_signature_over_the_raw_body_is_accepted() -> None:
    assert verify_signature(APP_SECRET, BODY, sign(BODY)) is True


def test_signature_hex_case_is_ignored() -> None:
    header = sign(BODY)
    assert verify_signature(APP_SECRET, BODY, "sha256=" + header[7:].upper()) is True


def test_signature_with_another_secret_is_rejected() -> None:
    assert verify_signature(APP_SECRET, BODY, sign(BODY, "other-secret")) is False


def test_signature_of_reserialised_json_is_rejected() -> None:
    reserialised = json.dumps(json.loads(BODY)).encode()  # adds spaces: other bytes

    assert verify_signature(APP_SECRET, BODY, sign(reserialised)) is False


def test_missing_signature_is_rejected() -> None:
    assert verify_signature(APP_SECRET, BODY, None) is False


@pytest.mark.parametrize(
    "header",
    [
        "sha1=" + hmac.new(APP_SECRET.encode(), BODY, hashlib.sha1).hexdigest(),
        sign(BODY)[len("sha256=") :],  # right digest, no prefix
        "sha256=",
        "",
        "sha256=é" + "0" * 63,  # non-ASCII must not raise
    ],
    ids=["sha1-prefix", "no-prefix", "empty-digest", "empty", "non-ascii"],
)
def test_malformed_signature_header_is_rejected(header: str) -> None:
    assert verify_signature(APP_SECRET, BODY, header) is False


def test_empty_app_secret_never_verifies() -> None:
    assert verify_signature("", BODY, sign(BODY, "")) is False


# --- handshake ---------------------------------------------------------------------------


def handshake(**overrides: str) -> dict[str, str]:
    params = {"hub.mode": "subscribe", "hub.verify_token": "tok", "hub.challenge": "1158201444"}
    params.update(overrides)
    return params


def test_handshake_with_matching_token_returns_the_challenge() -> None:
    assert verify_handshake(handshake(), "tok") == "1158201444"


@pytest.mark.parametrize(
    ("params", "verify_token"),
    [
        (handshake(**{"hub.verify_token": "wrong"}), "tok"),
        (handshake(**{"hub.mode": "unsubscribe"}), "tok"),
        (handshake(**{"hub.challenge": ""}), "tok"),
        ({"hub.mode": "subscribe", "hub.challenge": "1"}, "tok"),
        (handshake(**{"hub.verify_token": ""}), ""),
    ],
    ids=["wrong-token", "wrong-mode", "empty-challenge", "no-token", "empty-configured-token"],
)
def test_invalid_handshake_returns_none(params: dict[str, str], verify_token: str) -> None:
    assert verify_handshake(params, verify_token) is None


# --- statuses ----------------------------------------------------------------------------


def envelope(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": list(entries)}


def entry(*changes: dict[str, Any], waba_id: str = "102290129340398") -> dict[str, Any]:
    return {"id": waba_id, "changes": list(changes)}


def change(*, statuses: Any = None, messages: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A ``messages`` change; ``statuses`` is Any so tests can pass malformed ones."""
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
    }
    if statuses is not None:
        value["statuses"] = statuses
    if messages is not None:
        value["contacts"] = [{"profile": {"name": "Kerry"}, "wa_id": "16315551234"}]
        value["messages"] = messages
    return {"field": "messages", "value": value}


def status(
    wamid: str, name: str, timestamp: str | int = "1750263773", **extra: Any
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": wamid,
        "status": name,
        "timestamp": timestamp,
        "recipient_id": "16315551234",
    }
    item.update(extra)
    return item


SENT_WITH_EVERYTHING = status(
    "wamid.SENT",
    "sent",
    biz_opaque_callback_data="msg_01",
    conversation={
        "id": "f3d5e5b2c1",
        "origin": {"type": "service"},
        "expiration_timestamp": "1750350173",
    },
    pricing={"billable": True, "pricing_model": "CBP", "category": "service"},
)


def test_sent_status_carries_the_tracking_id_and_recipient() -> None:
    updates = parse_statuses(envelope(entry(change(statuses=[SENT_WITH_EVERYTHING]))))

    assert updates == [
        StatusUpdate(
            provider_message_id="wamid.SENT",
            status=Status.SENT,
            timestamp=1750263773,
            tracking_id="msg_01",
            recipient="16315551234",
        )
    ]


def test_delivered_and_read_map_to_their_statuses() -> None:
    payload = envelope(
        entry(
            change(
                statuses=[
                    status("wamid.A", "delivered", pricing={"pricing_model": "PMP"}),
                    status("wamid.A", "read"),
                ]
            )
        )
    )

    assert [u.status for u in parse_statuses(payload)] == [Status.DELIVERED, Status.READ]


def test_failed_status_carries_its_errors() -> None:
    failed = status(
        "wamid.F",
        "failed",
        errors=[
            {
                "code": 131026,
                "title": "Message undeliverable",
                "message": "Message undeliverable",
                "error_data": {"details": "Recipient is not on WhatsApp"},
                "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
            },
            {"code": 131047, "title": "Re-engagement message", "error_data": "more than 24 h"},
            {"code": 131000, "message": "Something went wrong"},
        ],
    )

    [update] = parse_statuses(envelope(entry(change(statuses=[failed]))))

    assert update.status == Status.FAILED
    assert update.errors == (
        ProviderErrorInfo(131026, "Message undeliverable", "Recipient is not on WhatsApp"),
        ProviderErrorInfo(131047, "Re-engagement message", "more than 24 h"),
        ProviderErrorInfo(131000, "Something went wrong", "Something went wrong"),
    )


def test_unknown_statuses_are_skipped() -> None:
    payload = envelope(
        entry(
            change(
                statuses=[
                    status("wamid.V", "played"),
                    status("wamid.D", "deleted"),
                    status("wamid.W", "warning"),
                    status("wamid.OK", "delivered"),
                ]
            )
        )
    )

    assert [u.provider_message_id for u in parse_statuses(payload)] == ["wamid.OK"]


def test_batched_entries_and_changes_are_all_read_in_order() -> None:
    inbound = {
        "from": "16315551234",
        "id": "wamid.IN",
        "timestamp": "1750263700",
        "type": "text",
        "text": {"body": "hello"},
    }
    payload = envelope(
        entry(
            change(statuses=[status("wamid.1", "sent")]),
            change(messages=[inbound]),
            change(statuses=[status("wamid.2", "sent"), status("wamid.1", "delivered")]),
        ),
        entry(
            {"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}},
            change(statuses=[status("wamid.3", "read")]),
            waba_id="999",
        ),
    )

    updates = parse_statuses(payload)

    assert [(u.provider_message_id, u.status) for u in updates] == [
        ("wamid.1", Status.SENT),
        ("wamid.2", Status.SENT),
        ("wamid.1", Status.DELIVERED),
        ("wamid.3", Status.READ),
    ]


def test_optional_fields_may_be_missing() -> None:
    bare = {"id": "wamid.B", "status": "delivered", "timestamp": "1750263773"}

    assert parse_statuses(envelope(entry(change(statuses=[bare])))) == [
        StatusUpdate("wamid.B", Status.DELIVERED, 1750263773)
    ]


def test_integer_timestamp_is_accepted() -> None:
    [update] = parse_statuses(envelope(entry(change(statuses=[status("w", "sent", 17)]))))

    assert update.timestamp == 17


def test_payload_without_statuses_gives_nothing() -> None:
    assert parse_statuses(envelope()) == []
    assert parse_statuses(envelope(entry())) == []
    assert parse_statuses(envelope({"id": "1"})) == []
    assert parse_statuses(envelope(entry({"field": "messages"}))) == []


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"object": "whatsapp_business_account"}, "entry"),
        ({"entry": {"id": "1"}}, "entry"),
        ({"entry": None}, "entry"),
        ({"entry": ["oops"]}, "entry[0]"),
        ({"entry": [{"changes": {"field": "messages"}}]}, "entry[0].changes"),
        ({"entry": [{"changes": [{"value": []}]}]}, "entry[0].changes[0].value"),
        (
            envelope(entry(change(statuses={"id": "w"}))),
            "entry[0].changes[0].value.statuses",
        ),
        (envelope(entry(change(statuses=["w"]))), "entry[0].changes[0].value.statuses[0]"),
        (
            envelope(entry(change(statuses=[{"status": "sent", "timestamp": "1"}]))),
            "entry[0].changes[0].value.statuses[0].id",
        ),
        (
            envelope(entry(change(statuses=[{"id": "w", "timestamp": "1"}]))),
            "entry[0].changes[0].value.statuses[0].status",
        ),
        (
            envelope(entry(change(statuses=[status("w", "sent", "yesterday")]))),
            "entry[0].changes[0].value.statuses[0].timestamp",
        ),
        (
            envelope(entry(change(statuses=[{"id": "w", "status": "read"}]))),
            "entry[0].changes[0].value.statuses[0].timestamp",
        ),
        (
            envelope(entry(change(statuses=[status("w", "failed", errors="boom")]))),
            "entry[0].changes[0].value.statuses[0].errors",
        ),
        (
            envelope(entry(change(statuses=[status("w", "failed", errors=[42])]))),
            "entry[0].changes[0].value.statuses[0].errors[0]",
        ),
    ],
)
def test_wrong_shape_raises_validation_error_naming_the_field(
    payload: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        parse_statuses(payload)

    assert raised.value.details == {"field": field}
    assert field in raised.value.message


def test_payload_that_is_not_an_object_raises_validation_error() -> None:
    with pytest.raises(ValidationError, match="must be an object"):
        parse_statuses([])  # type: ignore[arg-type]
