"""The Cloud API's wire shapes the sandbox answers with: error bodies, status webhooks and
their signature (PROVIDERS.md 1.3 and 1.4)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class MetaError:
    """One refusal: the HTTP status and Meta ``error`` fields, plus ``kind``, the name
    it is counted under in ``GET /_sandbox/stats``."""

    kind: str
    http_status: int
    code: int
    message: str
    details: str


AUTH_FAILED = MetaError(
    "auth",
    401,
    190,
    "Invalid OAuth access token - Cannot parse access token",
    "The access token is missing, expired or invalid.",
)
APP_RATE_LIMIT = MetaError(
    "http_429",
    429,
    4,
    "(#4) Application request limit reached",
    "Too many API calls from this app in a short period of time.",
)
THROUGHPUT_LIMIT = MetaError(
    "throughput_130429",
    400,
    130429,
    "(#130429) Rate limit hit",
    "Message failed to send because there were too many messages sent from this phone "
    "number in a short period of time.",
)
PAIR_RATE_LIMIT = MetaError(
    "pair_131056",
    400,
    131056,
    "(#131056) (Business Account, Consumer Account) pair rate limit hit",
    "Message failed to send because there were too many messages sent from this phone "
    "number to the same phone number in a short period of time.",
)
UNKNOWN_ERROR = MetaError(
    "server_error",
    500,
    131000,
    "(#131000) Something went wrong",
    "Message failed to send due to an unknown error.",
)
SERVICE_UNAVAILABLE = MetaError(
    "server_error",
    503,
    2,
    "(#2) Service temporarily unavailable",
    "The service is temporarily unavailable; try again later.",
)


def invalid_parameter(details: str) -> MetaError:
    """Code 100, Meta's answer to a missing, misspelled or out-of-range field."""
    return MetaError("invalid", 400, 100, "(#100) Invalid parameter", details)


def error_body(error: MetaError) -> bytes:
    """The JSON body of a refusal, in the shape of PROVIDERS.md 1.3."""
    return orjson.dumps(
        {
            "error": {
                "message": error.message,
                "type": "OAuthException",
                "code": error.code,
                "error_data": {"messaging_product": "whatsapp", "details": error.details},
                "fbtrace_id": secrets.token_urlsafe(18),
            }
        }
    )


# The errors[] entry of a failed status: the shape Meta uses inside webhooks.
UNDELIVERABLE_ERRORS: list[dict[str, Any]] = [
    {
        "code": 131026,
        "title": "Message undeliverable",
        "message": "Message undeliverable",
        "error_data": {"details": "Message Undeliverable."},
        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
    }
]


@dataclass(frozen=True, slots=True)
class Account:
    """Who the webhook comes from: the envelope's ``entry[].id`` and ``metadata``."""

    waba_id: str
    display_phone_number: str
    phone_number_id: str


def status_webhook_body(
    account: Account,
    *,
    wamid: str,
    status: str,
    timestamp: int,
    recipient_id: str,
    callback_data: str | None,
) -> bytes:
    """One status in Meta's ``messages`` webhook envelope, serialised once so the
    signature and every retry cover the same bytes.

    ``callback_data`` is echoed as ``biz_opaque_callback_data`` when not ``None``, on
    every status including ``failed`` (unconfirmed for Meta, and what our hub needs to
    settle an uncertain send). A ``failed`` status carries ``errors`` (code 131026).
    """
    entry: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": str(timestamp),
        "recipient_id": recipient_id,
    }
    if callback_data is not None:
        entry["biz_opaque_callback_data"] = callback_data
    if status == "failed":
        entry["errors"] = UNDELIVERABLE_ERRORS
    return orjson.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": account.waba_id,
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": account.display_phone_number,
                                    "phone_number_id": account.phone_number_id,
                                },
                                "statuses": [entry],
                            },
                        }
                    ],
                }
            ],
        }
    )


def signature_header(app_secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value: ``sha256=`` + hex HMAC-SHA256 of the raw body."""
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"
