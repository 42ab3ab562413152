"""The sandbox's knobs: what it answers, what it breaks on purpose, how it sends webhooks.

Every field has a default, so ``SandboxConfig()`` is a well-behaved Cloud API that accepts
every valid send and reports sent, delivered and read a few milliseconds later (if a
``webhook_url`` is set), plus a healthy WHAPI channel under ``/whapi`` (token
``sandbox-whapi-token``) with the default group directory (``whapi_directory``).

Every assignment is validated, including ``sandbox.config.rate_5xx = 0.5`` at runtime, so
the send path can read the knobs without re-checking them.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

# The statuses a healthy message goes through, in Meta's order.
STATUS_ORDER: tuple[str, ...] = ("sent", "delivered", "read")

# Fields read once by ``Sandbox.start`` (they size the webhook sender pool); changing
# them on a running sandbox would silently do nothing, so the config endpoint refuses.
START_ONLY_FIELDS = frozenset({"webhook_concurrency"})

# Write-only fields: accepted by the config endpoint, masked when read back.
SECRET_FIELDS = (
    "app_secret",
    "access_token",
    "whapi_token",
    "periskope_api_key",
    "whapi_webhook_secret",
    "periskope_signing_key",
)

# Simulated inbound traffic (``inbound.py``): the providers it speaks and the kinds of
# message it can make. Not every provider has every kind (see ``inbound.KINDS_BY_PROVIDER``).
INBOUND_PROVIDERS: tuple[str, ...] = ("cloudapi", "whapi", "periskope")
INBOUND_KINDS: tuple[str, ...] = (
    "text",
    "reply",
    "image",
    "document",
    "reaction",
    "location",
    "interactive",
    "unsupported",
)


@dataclass
class SandboxConfig:
    """Knobs of one sandbox. Fractions are probabilities in 0..1 drawn per request.

    The injected send errors (``rate_http_429``, ``rate_throughput_130429``,
    ``rate_pair_131056``, ``rate_5xx``, ``rate_timeout``) share one draw per valid
    request: each takes its own fraction of the requests, and if they add up past 1 the
    earlier ones in that order win. Invalid requests are always answered 400 (code 100)
    and never meet an injected error.
    """

    app_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    """Key of the ``X-Hub-Signature-256`` HMAC on every webhook POST: random unless set
    (to the hub's ``WAHUB_CLOUDAPI_APP_SECRET``), so no secret in our source signs."""

    access_token: str | None = None
    """When set, sends without ``Authorization: Bearer <access_token>`` get 401, code 190."""

    webhook_url: str | None = None
    """Where status webhooks are POSTed; ``None`` emits none."""

    waba_id: str = "100000000000001"
    """``entry[].id`` of webhook envelopes (the WhatsApp Business Account id)."""

    display_phone_number: str = "15550001234"
    """``metadata.display_phone_number`` of webhook envelopes."""

    latency_ms: float = 0.0
    """Delay added before answering every send."""

    latency_jitter_ms: float = 0.0
    """Uniform random extra delay in 0..this, added to ``latency_ms``."""

    rate_http_429: float = 0.0
    """Fraction of sends refused with HTTP 429, code 4 (application request limit)."""

    rate_throughput_130429: float = 0.0
    """Fraction refused with HTTP 400, code 130429 "Rate limit hit" (number throughput)."""

    rate_pair_131056: float = 0.0
    """Fraction refused with HTTP 400, code 131056 (pair rate limit)."""

    rate_5xx: float = 0.0
    """Fraction refused with HTTP 500 code 131000, or HTTP 503 code 2, half each."""

    rate_timeout: float = 0.0
    """Fraction accepted (recorded, webhooks emitted) but answered only after
    ``timeout_hold_s``: the ambiguous "did it send?" case a client sees as a timeout."""

    timeout_hold_s: float = 30.0
    """How long a ``rate_timeout`` send is held before its 200 answer."""

    retry_after_s: float | None = None
    """When set, 429 answers carry ``Retry-After`` with this many seconds."""

    fail_fraction: float = 0.0
    """Fraction of accepted sends whose statuses end in ``failed`` (code 131026) after
    ``sent``, instead of going on to delivered and read."""

    webhook_delay_ms: float = 5.0
    """Delay before each status webhook of a message (after the previous one arrived)."""

    duplicate_fraction: float = 0.0
    """Fraction of status webhooks delivered twice (the same signed body)."""

    shuffle: bool = False
    """Give each status of a message an independent random delay, so they may arrive
    out of order (timestamps still follow the true order)."""

    statuses: tuple[str, ...] = STATUS_ORDER
    """Which of sent, delivered, read to emit; kept in that order whatever the input."""

    seed: int | None = None
    """Seed of the sandbox's ``random.Random``; read at construction, on reset and when
    changed through ``POST /_sandbox/config``."""

    webhook_max_attempts: int = 50
    """Attempts per webhook delivery before it is given up (counted in stats)."""

    webhook_backoff_initial_s: float = 0.2
    """First retry delay after a failed delivery; doubles per attempt."""

    webhook_backoff_max_s: float = 5.0
    """Cap of the retry delay."""

    webhook_timeout_s: float = 10.0
    """Per-attempt timeout of a webhook POST; a timeout counts as a failed attempt."""

    webhook_concurrency: int = 32
    """Size of the webhook sender pool (concurrent POSTs); read by ``Sandbox.start``."""

    # -- the WHAPI channel under /whapi (see ``whapi.py``) -------------------------------

    whapi_token: str | None = "sandbox-whapi-token"
    """The WHAPI channel token: requests under ``/whapi`` without ``Authorization: Bearer
    <whapi_token>`` (or ``?token=``) get 401. ``None`` accepts any request."""

    whapi_own_phone: str = "14155550100"
    """The WHAPI channel's own number (digits): a participant of every default group but
    the two it left, the ``from`` of its sends, and who may send to a group. Read when
    the default directory is built (construction and reset)."""

    whapi_latency_ms: float = 0.0
    """Delay added before answering every ``/whapi`` request."""

    whapi_rate_limit: int | None = None
    """At most this many ``/whapi`` requests per ``whapi_rate_window_s`` (a fixed window);
    the rest of the window is answered 429 with ``Retry-After`` (whole seconds until the
    window ends, at least 1). ``None``: no limit. Refused requests use no budget."""

    whapi_rate_window_s: float = 1.0
    """Length of the ``whapi_rate_limit`` window in seconds."""

    whapi_fail_groups: tuple[str, ...] = ()
    """Group ids (``...@g.us``) whose ``GET /whapi/groups/{id}`` answers 500, whether or
    not the group exists: a provider failure for one group (the others still work)."""

    whapi_fail_list: bool = False
    """When true, ``GET /whapi/groups`` answers 500 (the whole listing fails)."""

    # -- the Periskope chat directory under /periskope (see ``periskope.py``) -------------

    periskope_api_key: str | None = "sandbox-periskope-key"
    """Requests under ``/periskope`` need ``Authorization: Bearer <periskope_api_key>`` and
    ``x-phone: <periskope_org_phone>``, else 401. ``None`` accepts any request."""

    periskope_org_phone: str = "919876512340"
    """The org phone (digits) the ``x-phone`` header must name; the ``org_phone`` of the
    default chats (read when the default directory is built: construction and reset)."""

    periskope_latency_ms: float = 0.0
    """Delay added before answering every ``/periskope`` request."""

    periskope_fail_status: int | None = None
    """When set (429 or 500..599), ``/periskope`` requests are answered with this status
    (a ``periskope_fail_rate`` share of them); 429 carries ``Retry-After``."""

    periskope_fail_rate: float = 1.0
    """Share (0..1) of ``/periskope`` requests ``periskope_fail_status`` applies to."""

    periskope_retry_after_s: float = 1.0
    """``Retry-After`` of injected 429s, in seconds (sent rounded up, at least 1)."""

    # -- simulated inbound messages (see ``inbound.py``) ----------------------------------
    # Cloud API inbound webhooks go to ``webhook_url``, signed with ``app_secret``.

    whapi_webhook_url: str | None = None
    """Where WHAPI-shaped inbound webhooks (``messages.post``) are POSTed; ``None``: none."""

    whapi_webhook_secret: str | None = None
    """Added to ``whapi_webhook_url`` as ``?secret=``: WHAPI signs nothing, so the hub's
    shared secret travels in the URL an operator sets at WHAPI."""

    whapi_channel_id: str = "SANDBOX-WHAPI"
    """``channel_id`` of WHAPI webhook envelopes."""

    periskope_webhook_url: str | None = None
    """Where Periskope-shaped webhooks (``message.created``) are POSTed; ``None``: none."""

    periskope_signing_key: str | None = None
    """Key of the ``x-periskope-signature`` HMAC; ``None`` sends them unsigned."""

    inbound_trickle_per_minute: float = 0.0
    """Average simulated inbound messages per minute (random intervals), for demos:
    leads replying to recent sends, or writing first when there is none. 0: off."""

    inbound_trickle_providers: tuple[str, ...] = ("cloudapi",)
    """Providers the trickle picks from (those with a webhook URL set)."""

    inbound_trickle_kinds: tuple[str, ...] = ("reply",)
    """Kinds of message the trickle picks from (see ``INBOUND_KINDS``)."""

    # -- the web session engine under /web (see ``web.py``) --------------------------------

    web_qr_rotate_s: float = 20.0
    """How long each QR code of a pairing session lives before the next one replaces it
    (WhatsApp: about 20 s; tests set a fraction of a second)."""

    web_receipt_delay_ms: float = 20.0
    """Delay between a web send and its first receipt, and between receipts; every id
    that is due in the same tick is named by one receipt per chat and status."""

    web_receipts: tuple[str, ...] = STATUS_ORDER
    """Which receipts web sends get (of sent, delivered, read); empty: none."""

    def __setattr__(self, name: str, value: Any) -> None:
        # Validating here, not in __post_init__, also covers runtime changes and makes a
        # misspelt knob an error instead of a silently ignored new attribute.
        validator = _VALIDATORS.get(name)
        if validator is None:
            raise AttributeError(f"SandboxConfig has no knob {name!r}")
        object.__setattr__(self, name, validator(name, value))

    def to_dict(self) -> dict[str, Any]:
        """The knobs as JSON-ready values, with ``app_secret`` and ``access_token``
        masked: an embedded hub shares its real webhook secret with the sandbox, and
        secrets are never returned."""
        data = asdict(self)
        data["statuses"] = list(self.statuses)
        data["whapi_fail_groups"] = list(self.whapi_fail_groups)
        data["inbound_trickle_providers"] = list(self.inbound_trickle_providers)
        data["inbound_trickle_kinds"] = list(self.inbound_trickle_kinds)
        data["web_receipts"] = list(self.web_receipts)
        for name in SECRET_FIELDS:
            if data[name] is not None:
                data[name] = "***"
        return data

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply ``changes`` all or nothing.

        Raises ``ValueError`` naming the first unknown, start-only or invalid field; the
        config is unchanged when it raises.
        """
        known = {f.name for f in fields(self)}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown config field {name!r}")
            if name in START_ONLY_FIELDS:
                raise ValueError(f"{name!r} can only be set before the sandbox starts")
            _VALIDATORS[name](name, value)
        for name, value in changes.items():
            setattr(self, name, value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fraction(name: str, value: Any) -> float:
    if not _is_number(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in 0..1, got {value!r}")
    return float(value)


def _non_negative(name: str, value: Any) -> float:
    if not _is_number(value) or value < 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def _positive(name: str, value: Any) -> float:
    if not _is_number(value) or value <= 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def _optional_non_negative(name: str, value: Any) -> float | None:
    return None if value is None else _non_negative(name, value)


def _positive_int(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _optional_int(name: str, value: Any) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise ValueError(f"{name} must be an integer or null, got {value!r}")
    return value


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _optional_text(name: str, value: Any) -> str | None:
    return None if value is None else _text(name, value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def _optional_positive_int(name: str, value: Any) -> int | None:
    return None if value is None else _positive_int(name, value)


def _phone_digits(name: str, value: Any) -> str:
    if not isinstance(value, str) or not (value.isascii() and value.isdigit()):
        raise ValueError(f"{name} must be a string of digits (no +), got {value!r}")
    if not 7 <= len(value) <= 15:
        raise ValueError(f"{name} must have 7 to 15 digits, got {value!r}")
    return value


def _group_ids(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        raise ValueError(f"{name} must be a list of group ids")
    if not all(isinstance(item, str) and item.endswith("@g.us") for item in value):
        raise ValueError(f"{name} may only hold group ids ending in @g.us, got {value!r}")
    return tuple(value)


def _failure_status(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not (value == 429 or 500 <= value <= 599)
    ):
        raise ValueError(f"{name} must be null, 429 or 500..599, got {value!r}")
    return value


def _statuses(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        raise ValueError(f"{name} must be a list of {', '.join(STATUS_ORDER)}")
    unknown = set(value) - set(STATUS_ORDER)
    if unknown:
        raise ValueError(f"{name} may only hold {', '.join(STATUS_ORDER)}, got {sorted(unknown)}")
    return tuple(status for status in STATUS_ORDER if status in value)


def _choices(name: str, value: Any, allowed: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ValueError(f"{name} must be a list of {', '.join(allowed)}")
    unknown = [item for item in value if item not in allowed]
    if unknown or not value:
        raise ValueError(f"{name} must be a non-empty list of {', '.join(allowed)}, got {value!r}")
    return tuple(dict.fromkeys(value))


_VALIDATORS: dict[str, Callable[[str, Any], Any]] = {
    "app_secret": _text,
    "access_token": _optional_text,
    "webhook_url": _optional_text,
    "waba_id": _text,
    "display_phone_number": _text,
    "latency_ms": _non_negative,
    "latency_jitter_ms": _non_negative,
    "rate_http_429": _fraction,
    "rate_throughput_130429": _fraction,
    "rate_pair_131056": _fraction,
    "rate_5xx": _fraction,
    "rate_timeout": _fraction,
    "timeout_hold_s": _non_negative,
    "retry_after_s": _optional_non_negative,
    "fail_fraction": _fraction,
    "webhook_delay_ms": _non_negative,
    "duplicate_fraction": _fraction,
    "shuffle": _flag,
    "statuses": _statuses,
    "seed": _optional_int,
    "webhook_max_attempts": _positive_int,
    "webhook_backoff_initial_s": _non_negative,
    "webhook_backoff_max_s": _non_negative,
    "webhook_timeout_s": _positive,
    "webhook_concurrency": _positive_int,
    "whapi_token": _optional_text,
    "whapi_own_phone": _phone_digits,
    "whapi_latency_ms": _non_negative,
    "whapi_rate_limit": _optional_positive_int,
    "whapi_rate_window_s": _positive,
    "whapi_fail_groups": _group_ids,
    "whapi_fail_list": _flag,
    "periskope_api_key": _optional_text,
    "periskope_org_phone": _phone_digits,
    "periskope_latency_ms": _non_negative,
    "periskope_fail_status": _failure_status,
    "periskope_fail_rate": _fraction,
    "periskope_retry_after_s": _non_negative,
    "whapi_webhook_url": _optional_text,
    "whapi_webhook_secret": _optional_text,
    "whapi_channel_id": _text,
    "periskope_webhook_url": _optional_text,
    "periskope_signing_key": _optional_text,
    "inbound_trickle_per_minute": _non_negative,
    "inbound_trickle_providers": lambda name, value: _choices(name, value, INBOUND_PROVIDERS),
    "inbound_trickle_kinds": lambda name, value: _choices(name, value, INBOUND_KINDS),
    "web_qr_rotate_s": _positive,
    "web_receipt_delay_ms": _positive,
    "web_receipts": _statuses,
}
