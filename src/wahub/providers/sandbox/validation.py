"""Checks a send body the way the Cloud API does, before anything is recorded.

Only the rules a client can get wrong in practice are enforced (PROVIDERS.md 1.1); the
sandbox is not a schema validator for every optional field Meta knows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MESSAGE_TYPES = frozenset(
    {
        "text",
        "template",
        "image",
        "document",
        "audio",
        "video",
        "sticker",
        "interactive",
        "reaction",
        "location",
    }
)
MEDIA_TYPES = frozenset({"image", "document", "audio", "video", "sticker"})
MAX_TEXT_BODY = 4096
MAX_CALLBACK_DATA = 512
GROUP_SUFFIX = "@g.us"


class InvalidSend(Exception):
    """The body breaks a Cloud API rule; ``field`` is the dotted path of the culprit and
    ``details`` the sentence that goes into ``error_data.details``."""

    def __init__(self, field: str, details: str) -> None:
        super().__init__(details)
        self.field = field
        self.details = details


@dataclass(frozen=True, slots=True)
class ValidSend:
    """What the sandbox keeps from a valid body: the recipient as sent and as WhatsApp
    names it (digits, or the group JID), the type and the tracking data to echo."""

    to: str
    wa_id: str
    type: str
    biz_opaque_callback_data: str | None


def validate_send(body: Any) -> ValidSend:
    """Return the essentials of a valid send body; raise ``InvalidSend`` otherwise.

    A missing ``type`` means ``text``, as in Meta's API reference.
    """
    if not isinstance(body, dict):
        raise InvalidSend("body", "Request body must be a JSON object")
    if body.get("messaging_product") != "whatsapp":
        raise InvalidSend(
            "messaging_product", "Parameter 'messaging_product' is required and must be 'whatsapp'"
        )
    to, wa_id = _recipient(body.get("to"))
    message_type = body.get("type", "text")
    if message_type not in MESSAGE_TYPES:
        raise InvalidSend("type", f"Parameter 'type' has an unsupported value: {message_type!r}")
    payload = body.get(message_type)
    if not isinstance(payload, dict):
        raise InvalidSend(
            message_type, f"Parameter '{message_type}' is required for type '{message_type}'"
        )
    _check_payload(message_type, payload)
    callback_data = body.get("biz_opaque_callback_data")
    if callback_data is not None and (
        not isinstance(callback_data, str) or len(callback_data) > MAX_CALLBACK_DATA
    ):
        raise InvalidSend(
            "biz_opaque_callback_data",
            f"Parameter 'biz_opaque_callback_data' must be a string of at most "
            f"{MAX_CALLBACK_DATA} characters",
        )
    context = body.get("context")
    if context is not None and not (
        isinstance(context, dict) and isinstance(context.get("message_id"), str)
    ):
        raise InvalidSend("context.message_id", "Parameter 'context.message_id' is required")
    return ValidSend(to, wa_id, message_type, callback_data)


def _recipient(to: Any) -> tuple[str, str]:
    """``to`` as sent, and the canonical recipient: phone digits without ``+``, or a
    group JID as is."""
    if not isinstance(to, str) or not to:
        raise InvalidSend("to", "Parameter 'to' is required")
    if to.endswith(GROUP_SUFFIX):
        group = to[: -len(GROUP_SUFFIX)]
        if group and group.replace("-", "").isdigit() and group.isascii():
            return to, to
    else:
        digits = to[1:] if to.startswith("+") else to
        if digits.isdigit() and digits.isascii():
            return to, digits
    raise InvalidSend("to", f"Parameter 'to' is not a phone number or group id: {to!r}")


def _check_payload(message_type: str, payload: dict[str, Any]) -> None:
    if message_type == "text":
        text = payload.get("body")
        if not isinstance(text, str) or not text:
            raise InvalidSend("text.body", "Parameter 'text.body' is required")
        if len(text) > MAX_TEXT_BODY:
            raise InvalidSend(
                "text.body", f"Parameter 'text.body' must be at most {MAX_TEXT_BODY} characters"
            )
    elif message_type == "template":
        _require_text(payload, "template", "name")
        language = payload.get("language")
        if not isinstance(language, dict):
            raise InvalidSend("template.language.code", "Parameter 'template.language' is required")
        _require_text(language, "template.language", "code")
    elif message_type in MEDIA_TYPES:
        if not _is_text(payload.get("link")) and not _is_text(payload.get("id")):
            raise InvalidSend(
                f"{message_type}.link",
                f"Parameter '{message_type}' needs either 'link' or 'id'",
            )
    elif message_type == "interactive":
        _require_text(payload, "interactive", "type")
        if not isinstance(payload.get("action"), dict):
            raise InvalidSend("interactive.action", "Parameter 'interactive.action' is required")
    elif message_type == "reaction":
        _require_text(payload, "reaction", "message_id")
        # An empty emoji is valid: it removes the reaction.
        if not isinstance(payload.get("emoji"), str):
            raise InvalidSend("reaction.emoji", "Parameter 'reaction.emoji' is required")
    elif message_type == "location":
        for name in ("latitude", "longitude"):
            value = payload.get(name)
            if not isinstance(value, int | float | str) or isinstance(value, bool):
                raise InvalidSend(f"location.{name}", f"Parameter 'location.{name}' is required")


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _require_text(payload: dict[str, Any], parent: str, name: str) -> None:
    if not _is_text(payload.get(name)):
        raise InvalidSend(f"{parent}.{name}", f"Parameter '{parent}.{name}' is required")
