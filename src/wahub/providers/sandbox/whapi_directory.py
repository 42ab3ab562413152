"""The sandbox WHAPI channel's groups: a deterministic default directory, and the checks a
replacement directory (``POST /_sandbox/whapi/groups``) must pass.

The default directory is the same on every machine and every run (its own fixed seed,
independent of ``SandboxConfig.seed``), so tests and the groups feature can rely on its
shape:

- ``DEFAULT_GROUP_COUNT`` (60) groups, listed most recently active first, each with 3 to
  40 participants besides our own number (group 0 has 40, group 1 has 3): one
  ``creator``, one to three ``admin``s, the rest ``member``s.
- Our own number (``SandboxConfig.whapi_own_phone``) is a participant of every group
  except ``LEFT_GROUP_INDICES`` (7 and 42): the bot left those, so they are listed with
  ``read_only: true`` and without it. We created every tenth group (rank ``creator``),
  and are ``admin`` in every third of the others.
- Participants come from a pool of ``PEOPLE`` (400) valid mobile numbers (DE, BR, IN, US, UK),
  so people share groups; ``HUB_PERSON`` (pool index 0) is an admin of every fourth
  group. Every sixth person of the pool (index % 6 == 5) hides their number: they are
  listed only as ``lid_for(phone)`` (``NNNNNNNNNNNNNN@lid``), in every group they are in.
  Creators always show their number.
- Ids are ``120363`` + 12 digits ``@g.us``, except groups 13, 33 and 53, which have the
  old ``<creator phone>-<unix time>@g.us`` form.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

DEFAULT_GROUP_COUNT: Final = 60
LEFT_GROUP_INDICES: Final = (7, 42)
OLD_STYLE_ID_INDICES: Final = (13, 33, 53)
PEOPLE: Final = 400
HUB_PERSON: Final = 0
LID_EVERY: Final = 6  # pool indices with index % LID_EVERY == LID_EVERY - 1 hide numbers

# The OpenAPI GroupID pattern: GET /groups/{GroupID} answers 400 for anything else.
GROUP_ID_RE: Final = re.compile(r"^[\d-]{10,31}@g\.us$", re.ASCII)
RANKS: Final = frozenset({"creator", "admin", "member"})

_SEED: Final = 20250601
# 2021-01-01 and 2025-06-01, UTC: creation dates fall between them.
_EPOCH_START: Final = 1_609_459_200
_NEWEST_ACTIVITY: Final = 1_748_736_000

_FIRST: Final = (
    "Nova", "Leo", "Mara", "Kian", "Ines", "Theo", "Ayla", "Jonas", "Luna", "Rafael",
    "Priya", "Omar", "Zoe", "Malik", "Sofia", "Emil", "Yara", "Noah", "Lea", "Dario",
)  # fmt: skip
_LAST: Final = (
    "Reyes", "Hartmann", "Okafor", "Silva", "Novak", "Iyer", "Lindqvist", "Moreau",
    "Kowalski", "Tanaka", "Haddad", "Brennan", "Costa", "Weber", "Mensah",
)  # fmt: skip
_TOPIC: Final = (
    "Team", "Release Campaign", "Booking", "Tour 2025", "Promo", "Management",
    "Playlist Pitch", "Live Shows",
)  # fmt: skip


def lid_for(phone: str) -> str:
    """The linked id the sandbox gives a phone number (any spelling; only the digits
    count): a stable 14-digit ``NNNNNNNNNNNNNN@lid``. ``GET /whapi/contacts/lids`` answers
    with it, and the default directory lists hidden people by it."""
    digits = re.sub(r"\D", "", phone)
    value = int.from_bytes(hashlib.sha256(f"lid:{digits}".encode()).digest()[:8], "big")
    return f"{10**13 + value % (9 * 10**13)}@lid"


def default_directory(own_phone: str) -> list[dict[str, Any]]:
    """The default groups in WHAPI ``Group`` shape, as fresh objects the caller may
    change. ``own_phone`` is the sandbox channel's number (digits, ``+`` allowed)."""
    return list(orjson.loads(_default_directory_json(own_phone.removeprefix("+"))))


def people() -> tuple[str, ...]:
    """The pool the default directory draws participants from: phone digits, no ``+``."""
    return _people()


def check_groups(raw: Any) -> list[dict[str, Any]]:
    """A replacement directory: a JSON list of WHAPI ``Group`` objects.

    Each needs an ``id`` matching the GroupID pattern (unique in the list), a string
    ``name`` and a ``participants`` list of ``{id, rank}`` with a non-empty string id and a
    rank of creator, admin or member. ``type`` (``group``) and ``participants_count`` are
    filled in when missing; other fields are kept as given. Raises ``ValueError`` naming
    the first offending group.
    """
    if not isinstance(raw, list):
        raise ValueError("body must be a JSON list of groups")
    seen: set[str] = set()
    groups: list[dict[str, Any]] = []
    for index, item in enumerate(raw):
        where = f"groups[{index}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where} must be an object")
        group_id = item.get("id")
        if not isinstance(group_id, str) or not GROUP_ID_RE.match(group_id):
            raise ValueError(f"{where}.id must match {GROUP_ID_RE.pattern}, got {group_id!r}")
        if group_id in seen:
            raise ValueError(f"{where}.id {group_id!r} appears twice")
        seen.add(group_id)
        if not isinstance(item.get("name"), str):
            raise ValueError(f"{where}.name must be a string")
        participants = item.get("participants")
        if not isinstance(participants, list):
            raise ValueError(f"{where}.participants must be a list")
        for position, participant in enumerate(participants):
            _check_participant(participant, f"{where}.participants[{position}]")
        group = dict(item)
        group["participants"] = [dict(p) for p in participants]
        group.setdefault("type", "group")
        group.setdefault("participants_count", len(participants))
        groups.append(group)
    return groups


def is_participant(group: Mapping[str, Any], phone: str) -> bool:
    """Whether ``phone`` (digits, ``+`` allowed) is listed in ``group`` by number."""
    digits = phone.removeprefix("+")
    participants: Sequence[Mapping[str, Any]] = group.get("participants", ())
    return any(str(p.get("id", "")).split("@", 1)[0] == digits for p in participants)


def _check_participant(participant: Any, where: str) -> None:
    if not isinstance(participant, dict):
        raise ValueError(f"{where} must be an object")
    ident = participant.get("id")
    if not isinstance(ident, str) or not ident:
        raise ValueError(f"{where}.id must be a non-empty string")
    if participant.get("rank") not in RANKS:
        raise ValueError(f"{where}.rank must be one of {', '.join(sorted(RANKS))}")


@functools.cache
def _people() -> tuple[str, ...]:
    rng = random.Random(_SEED)
    # Mobile ranges in which every number is valid per libphonenumber (a unit test checks
    # the whole pool), so a hub that normalises member phones accepts them all: country
    # code and prefix, allowed first digits of the rest, then how many more digits.
    ranges = (
        ("49151", "0123456789", 7),
        ("49160", "0123456789", 6),
        ("55119", "0123456789", 7),
        ("919", "0123456789", 8),
        ("1415", "23456789", 6),  # a US exchange never starts with 0 or 1
        ("44740", "0123456789", 6),
    )
    pool: list[str] = []
    seen: set[str] = set()
    while len(pool) < PEOPLE:
        prefix, first_digits, rest = ranges[len(pool) % len(ranges)]
        candidate = (
            prefix
            + rng.choice(first_digits)
            + "".join(rng.choice("0123456789") for _ in range(rest))
        )
        if candidate not in seen:
            seen.add(candidate)
            pool.append(candidate)
    return tuple(pool)


@functools.cache
def _default_directory_json(own_phone: str) -> bytes:
    rng = random.Random(_SEED + 1)
    pool = _people()
    hidden = {index for index in range(len(pool)) if index % LID_EVERY == LID_EVERY - 1}
    shown = [index for index in range(len(pool)) if index not in hidden]
    groups: list[dict[str, Any]] = []
    used_ids: set[str] = set()
    for number in range(DEFAULT_GROUP_COUNT):
        others = 40 if number == 0 else 3 if number == 1 else rng.randint(3, 40)
        we_created = number % 10 == 0 and number not in LEFT_GROUP_INDICES
        we_are_in = number not in LEFT_GROUP_INDICES
        # Newest first, about a day and a half apart, as GET /groups lists them.
        timestamp = _NEWEST_ACTIVITY - number * 130_000 - rng.randrange(3600)
        created_at = rng.randint(_EPOCH_START, timestamp - 86_400)

        creator_index = rng.choice(shown[1:])
        members = [creator_index]
        if number % 4 == 0 and creator_index != HUB_PERSON:
            members.append(HUB_PERSON)
        candidates = [i for i in range(len(pool)) if i not in members]
        members += rng.sample(candidates, others - len(members))
        admins = set(members[1 : 1 + rng.randint(1, 3)])
        if number % 4 == 0:
            admins.add(HUB_PERSON)

        participants: list[dict[str, str]] = []
        for position, index in enumerate(members):
            if position == 0 and not we_created:
                rank = "creator"
            elif position == 0 or index in admins:
                rank = "admin"  # when we created the group, its first member is an admin
            else:
                rank = "member"
            ident = lid_for(pool[index]) if index in hidden else pool[index]
            participants.append({"id": ident, "rank": rank})
        if we_are_in:
            own_rank = "creator" if we_created else "admin" if number % 3 == 0 else "member"
            participants.append({"id": own_phone, "rank": own_rank})
        # As WhatsApp lists them: the creator, then admins, then members (a stable sort).
        participants.sort(key=lambda p: ("creator", "admin", "member").index(p["rank"]))

        creator = own_phone if we_created else pool[creator_index]
        if number in OLD_STYLE_ID_INDICES:
            group_id = f"{creator}-{created_at}@g.us"
        else:
            group_id = f"120363{rng.randrange(10**11, 10**12)}@g.us"
        if group_id in used_ids:  # astronomically unlikely; keeps the ids unique anyway
            group_id = f"120363{10**11 + number}@g.us"
        used_ids.add(group_id)

        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        name = f"{first} {last} \N{EN DASH} {rng.choice(_TOPIC)}"
        if number % 9 == 4:
            name = "🎤 " + name  # names are free text: emoji and dashes included
        group: dict[str, Any] = {
            "id": group_id,
            "name": name,
            "type": "group",
            "timestamp": timestamp,
            "participants_count": len(participants),
            "participants": participants,
            "created_at": created_at,
            "created_by": creator,
            "name_at": created_at,
            "not_spam": True,
            "restricted": number % 5 == 0,
            "announcements": number % 11 == 0,
        }
        if number % 3 == 1:
            group["description"] = f"Coordination for {first} {last}."
        if not we_are_in:
            group["read_only"] = True
        groups.append(group)
    return orjson.dumps(groups)
