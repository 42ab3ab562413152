"""Pure rules about inbound messages: opt-out keywords, auto-reply matching, business hours.

No I/O: the inbox processor and the auto-reply admin API call these.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from wahub.domain.errors import ValidationError

# Status of a message a provider told us about (direction ``in``). Not part of the
# outbound status machine: the claim query only takes queued messages, so a received one
# is never sent, and status webhooks never match it.
RECEIVED = "received"

# WhatsApp's own opt-out guidance names STOP; these are its common translations
# (English, German, Spanish, French, Portuguese, Italian, Dutch, Swedish/Norwegian...).
DEFAULT_OPT_OUT_KEYWORDS = (
    "STOP",
    "STOPP",
    "UNSUBSCRIBE",
    "STOP ALL",
    "ARRET",
    "ARRÊT",
    "ALTO",
    "BAJA",
    "DARSE DE BAJA",
    "PARAR",
    "SAIR",
    "CANCELAR",
    "ABMELDEN",
    "ABBESTELLEN",
    "DISISCRIVITI",
    "AFMELDEN",
)
# A later message with one of these opts the contact back in.
DEFAULT_OPT_IN_KEYWORDS = ("START", "UNSTOP", "SUBSCRIBE", "ANMELDEN", "ALTA", "INICIAR")

# Message types that are someone writing to us: they open the 24-hour window, count as
# unread and may trigger an auto-reply. A reaction or a system notice (number changed)
# does none of that.
CONVERSATIONAL_EXCLUDED = frozenset({"reaction", "system"})


def keyword_form(text: str) -> str:
    """``text`` folded for keyword comparison: accents stripped, case folded, inner
    whitespace collapsed, surrounding punctuation dropped (``" Stop! "`` -> ``"stop"``)."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    words = bare.casefold().split()
    return " ".join(words).strip(".,;:!?¡¿'\"()[]")


def keyword_set(keywords: Iterable[str]) -> frozenset[str]:
    return frozenset(k for k in (keyword_form(w) for w in keywords) if k)


def parse_keyword_list(raw: str) -> tuple[str, ...]:
    """A comma-separated setting (``"STOP, UNSUBSCRIBE"``) as its keywords."""
    return tuple(k.strip() for k in raw.split(",") if k.strip())


def is_whole_message_keyword(text: str | None, keywords: frozenset[str]) -> bool:
    """Whether the whole message is one of ``keywords`` (a sentence containing "stop" is
    not an opt-out)."""
    return text is not None and keyword_form(text) in keywords


# -- auto-reply rules ----------------------------------------------------------------------

MATCH_KINDS = ("keyword", "regex", "first_message", "outside_hours")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """Open on ``days`` (0 = Monday ... 6 = Sunday) from ``start`` to ``end`` local time
    in ``timezone``. ``end`` before ``start`` spans midnight (22:00-06:00)."""

    timezone: str
    days: frozenset[int]
    start: time
    end: time

    def is_open(self, at: float) -> bool:
        local = datetime.fromtimestamp(at, tz=UTC).astimezone(ZoneInfo(self.timezone))
        now = local.time().replace(tzinfo=None)
        if self.start <= self.end:
            return local.weekday() in self.days and self.start <= now < self.end
        # Overnight: the evening belongs to today's opening, the early morning to
        # the opening that started yesterday.
        if now >= self.start:
            return local.weekday() in self.days
        return now < self.end and (local.weekday() - 1) % 7 in self.days


def parse_business_hours(raw: Mapping[str, Any] | None, *, field: str) -> BusinessHours:
    """Validate ``{"timezone": "Europe/Berlin", "days": [0,1,2,3,4], "start": "09:00",
    "end": "17:00"}``. Raises ValidationError naming the bad part."""
    if not isinstance(raw, Mapping):
        raise ValidationError(
            f"{field}: outside_hours rules need business_hours "
            '{"timezone", "days", "start", "end"}',
            details={"field": field},
        )
    zone = raw.get("timezone")
    try:
        if not isinstance(zone, str):
            raise ZoneInfoNotFoundError
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            f"{field}.timezone: {zone!r} is not an IANA time zone (e.g. Europe/Berlin)",
            details={"field": f"{field}.timezone"},
        ) from None
    days = raw.get("days", [0, 1, 2, 3, 4])
    if (
        not isinstance(days, list)
        or not days
        or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 6 for d in days)
    ):
        raise ValidationError(
            f"{field}.days: a non-empty list of weekdays, 0 = Monday ... 6 = Sunday",
            details={"field": f"{field}.days"},
        )
    bounds: list[time] = []
    for key in ("start", "end"):
        value = raw.get(key)
        match = _HHMM.match(value) if isinstance(value, str) else None
        if match is None:
            raise ValidationError(
                f"{field}.{key}: a time as HH:MM (24 h), got {value!r}",
                details={"field": f"{field}.{key}"},
            )
        bounds.append(time(int(match[1]), int(match[2])))
    if bounds[0] == bounds[1]:
        raise ValidationError(
            f"{field}: start and end must differ", details={"field": f"{field}.end"}
        )
    return BusinessHours(zone, frozenset(days), bounds[0], bounds[1])


def validate_rule(
    match_kind: str, pattern: str | None, business_hours: Mapping[str, Any] | None
) -> None:
    """Raises ValidationError when a rule could never be evaluated."""
    if match_kind not in MATCH_KINDS:
        raise ValidationError(
            f"match_kind: one of {', '.join(MATCH_KINDS)} (got {match_kind!r})",
            details={"field": "match_kind"},
        )
    if match_kind in ("keyword", "regex") and not (pattern or "").strip():
        raise ValidationError(
            f"pattern: a {match_kind} rule needs a pattern", details={"field": "pattern"}
        )
    if match_kind == "regex":
        try:
            re.compile(pattern or "")
        except re.error as exc:
            raise ValidationError(
                f"pattern: not a regular expression: {exc}", details={"field": "pattern"}
            ) from None
    if match_kind == "outside_hours":
        parse_business_hours(business_hours, field="business_hours")


def rule_matches(
    rule: Mapping[str, Any], *, text: str | None, at: float, first_message: bool
) -> bool:
    """Whether an auto-reply rule answers a message with ``text`` sent at ``at``.

    keyword: any of the pattern's comma-separated keywords as a whole word, any case;
    regex: the pattern found anywhere, case-insensitive; first_message: the message
    opened the conversation; outside_hours: sent outside the rule's business hours.
    """
    kind = rule["match_kind"]
    pattern = rule.get("pattern") or ""
    if kind == "keyword":
        if not text:
            return False
        words = [re.escape(k.strip()) for k in pattern.split(",") if k.strip()]
        if not words:
            return False
        return re.search(rf"(?<!\w)(?:{'|'.join(words)})(?!\w)", text, re.IGNORECASE) is not None
    if kind == "regex":
        return text is not None and re.search(pattern, text, re.IGNORECASE) is not None
    if kind == "first_message":
        return first_message
    if kind == "outside_hours":
        hours = parse_business_hours(rule.get("business_hours"), field="business_hours")
        return not hours.is_open(at)
    return False
