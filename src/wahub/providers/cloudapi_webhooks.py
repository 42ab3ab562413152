"""Meta Cloud API webhooks: the verification handshake, the signature, status updates.

Pure functions over what the HTTP layer received; no I/O. The HTTP layer answers the
handshake, rejects unsigned POSTs, then hands the decoded JSON to ``parse_statuses``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, Final

from wahub.domain.errors import ValidationError
from wahub.domain.status import Status
from wahub.providers.base import ProviderErrorInfo, StatusUpdate

__all__ = ["SIGNATURE_HEADER", "parse_statuses", "verify_handshake", "verify_signature"]

SIGNATURE_HEADER: Final = "X-Hub-Signature-256"

_SIGNATURE_PREFIX: Final = "sha256="

# Statuses we track. Others Meta sends ("played" for voice notes, "deleted", "warning")
# say nothing about delivery, so they are skipped rather than rejected.
_STATUS_BY_NAME: Final[Mapping[str, Status]] = {
    "sent": Status.SENT,
    "delivered": Status.DELIVERED,
    "read": Status.READ,
    "failed": Status.FAILED,
}


def verify_signature(app_secret: str, raw_body: bytes, header_value: str | None) -> bool:
    """Whether ``header_value`` (``X-Hub-Signature-256``) signs ``raw_body`` with the app secret.

    The header must be ``sha256=<hex HMAC-SHA256 of the raw body>``; hex case is ignored.
    Computed over the bytes as received (re-serialised JSON would differ) and compared
    in constant time. A missing header, another prefix, or an empty ``app_secret`` (a
    signature anyone could compute) gives ``False``. Never raises.
    """
    if not app_secret or header_value is None:
        return False
    value = header_value.strip()
    if not value.startswith(_SIGNATURE_PREFIX):
        return False
    received = value[len(_SIGNATURE_PREFIX) :].lower().encode("utf-8")
    expected = hmac.new(app_secret.encode("utf-8"), raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode("ascii"), received)


def verify_handshake(params: Mapping[str, str], verify_token: str) -> str | None:
    """The challenge to echo (as a plain-text 200) if Meta's GET handshake is valid.

    Valid means ``hub.mode == "subscribe"``, ``hub.verify_token`` equal to
    ``verify_token`` (compared in constant time) and a non-empty ``hub.challenge``.
    Anything else gives ``None``: the caller answers 403. An empty ``verify_token``
    never matches.
    """
    if not verify_token or params.get("hub.mode") != "subscribe":
        return None
    token = params.get("hub.verify_token")
    challenge = params.get("hub.challenge")
    if token is None or not challenge:
        return None
    if not hmac.compare_digest(token.encode("utf-8"), verify_token.encode("utf-8")):
        return None
    return challenge


def parse_statuses(payload: Mapping[str, Any]) -> list[StatusUpdate]:
    """Every delivery status in a webhook POST, in payload order.

    Walks ``entry[].changes[].value.statuses[]`` (one POST may batch several entries and
    changes). Changes without statuses (inbound messages, other fields) contribute
    nothing; statuses other than sent/delivered/read/failed are skipped. Optional fields
    (``biz_opaque_callback_data``, ``recipient_id``, ``errors``, pricing) may be absent.

    Raises ``ValidationError`` naming the offending path (e.g. ``entry[0].changes``) when
    the payload has the wrong shape: ``entry`` missing or not a list, a list item not an
    object, a status without a string ``id`` or a unix-seconds ``timestamp``.
    """
    root = _object(payload, "payload")
    entries = root.get("entry")
    if not isinstance(entries, list):
        raise _invalid("entry", f"must be a list, got {type(entries).__name__}")
    updates: list[StatusUpdate] = []
    for i, raw_entry in enumerate(entries):
        entry_path = f"entry[{i}]"
        entry = _object(raw_entry, entry_path)
        for j, raw_change in enumerate(_list(entry, "changes", entry_path)):
            change_path = f"{entry_path}.changes[{j}]"
            change = _object(raw_change, change_path)
            if change.get("value") is None:
                continue
            value_path = f"{change_path}.value"
            value = _object(change["value"], value_path)
            for k, raw_status in enumerate(_list(value, "statuses", value_path)):
                update = _status_update(raw_status, f"{value_path}.statuses[{k}]")
                if update is not None:
                    updates.append(update)
    return updates


def _status_update(raw: Any, path: str) -> StatusUpdate | None:
    item = _object(raw, path)
    name = item.get("status")
    if not isinstance(name, str):
        raise _invalid(f"{path}.status", "must be a string")
    status = _STATUS_BY_NAME.get(name)
    if status is None:
        return None
    provider_message_id = item.get("id")
    if not isinstance(provider_message_id, str) or not provider_message_id:
        raise _invalid(f"{path}.id", "must be a non-empty string (the wamid)")
    errors = tuple(
        _error_info(raw_error, f"{path}.errors[{n}]")
        for n, raw_error in enumerate(_list(item, "errors", path))
    )
    return StatusUpdate(
        provider_message_id=provider_message_id,
        status=status,
        timestamp=_timestamp(item.get("timestamp"), f"{path}.timestamp"),
        tracking_id=_optional_text(item.get("biz_opaque_callback_data")),
        recipient=_optional_text(item.get("recipient_id")),
        errors=errors,
    )


def _error_info(raw: Any, path: str) -> ProviderErrorInfo:
    error = _object(raw, path)
    raw_code = error.get("code")
    code = raw_code if isinstance(raw_code, int | str) and not isinstance(raw_code, bool) else None
    message = _optional_text(error.get("message"))
    title = _optional_text(error.get("title")) or message or "unknown error"
    error_data = error.get("error_data")
    # error_data is documented as {"details": ...} but is sometimes a bare string.
    if isinstance(error_data, Mapping):
        detail = _optional_text(error_data.get("details"))
    else:
        detail = _optional_text(error_data)
    return ProviderErrorInfo(code=code, title=title, detail=detail or message)


# Unix seconds must fit the BIGINT column (and any real clock) to be stored at all.
_MAX_TIMESTAMP = 2**62


def _timestamp(raw: Any, path: str) -> int:
    # Meta sends unix seconds as a string; accept a JSON integer too.
    value: int | None = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 19:
        value = int(raw)
    if value is None or not 0 <= value < _MAX_TIMESTAMP:
        raise _invalid(path, f"must be unix seconds, got {raw!r}")
    return value


def _object(raw: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise _invalid(path, f"must be an object, got {type(raw).__name__}")
    return raw


def _list(parent: Mapping[str, Any], key: str, parent_path: str) -> list[Any]:
    """``parent[key]`` as a list; absent or null counts as empty."""
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _invalid(f"{parent_path}.{key}", f"must be a list, got {type(value).__name__}")
    return value


def _optional_text(raw: Any) -> str | None:
    return raw if isinstance(raw, str) and raw else None


def _invalid(path: str, problem: str) -> ValidationError:
    return ValidationError(f"webhook payload: {path} {problem}", details={"field": path})
