"""Channels (provider connections), their templates, and registered chats."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from wahub.domain.credentials import CredentialCipher
from wahub.domain.errors import (
    ConflictError,
    CredentialsUnreadable,
    DuplicateChannel,
    NotFound,
    ProviderError,
    ValidationError,
    WahubError,
)
from wahub.domain.ids import new_id
from wahub.domain.phones import GROUP_SUFFIX, canonical_chat_id, normalize_phone
from wahub.providers import catalog
from wahub.providers.registry import ProviderRegistry
from wahub.providers.spec import Capability, ProviderSpec
from wahub.store import channels as q
from wahub.store import messages as message_q
from wahub.store.database import Connection, Database

SECRET_FIELDS = ("credentials", "lease_owner")

META_HOSTS = frozenset({"graph.facebook.com", "graph.facebook.net"})


# The error code of messages failed because their channel was removed.
CHANNEL_REMOVED = "channel_removed"


def public_channel(row: dict[str, Any]) -> dict[str, Any]:
    """A channel as the API shows it: never its credentials."""
    return {k: v for k, v in row.items() if k not in SECRET_FIELDS}


def channel_label(row: dict[str, Any]) -> str:
    """How errors name a channel: its name and id."""
    return f"{row['name']!r} ({row['id']})"


async def _find(conn: Connection, ref: str) -> dict[str, Any]:
    channel = await q.find_channel(conn, ref)
    if channel is None:
        raise NotFound(f"no channel {ref!r} (by id or name)", details={"channel": ref})
    return channel


async def _refuse_duplicate(conn: Connection, row: dict[str, Any]) -> None:
    clash = await q.find_duplicate_channel(
        conn,
        name=row["name"],
        kind=row["kind"],
        phone_number_id=row["phone_number_id"],
        exclude_id=row["id"],
    )
    if clash is None:
        return
    field, other = clash
    what = (
        f"the name {row['name']!r}"
        if field == "name"
        else f"{row['kind']} phone_number_id {row['phone_number_id']!r}"
    )
    raise DuplicateChannel(
        f"{field}: channel {other['id']} already has {what}",
        details={"field": field, "channel": other["id"]},
    )


def _name(name: str) -> str:
    if not name.strip():
        raise ValidationError("name must not be empty", details={"field": "name"})
    return name.strip()


def _spec(kind: str) -> ProviderSpec:
    """The declaration of ``kind``; ValidationError naming the known kinds otherwise."""
    spec = catalog.spec_for(kind)
    if spec is None:
        raise ValidationError(
            f"kind: must be one of {', '.join(catalog.kinds())} (got {kind!r})",
            details={"field": "kind"},
        )
    return spec


def _sealed_token(cipher: CredentialCipher, spec: ProviderSpec, token: str) -> str:
    """The token sealed under the key the kind's adapter reads, refused when empty: a
    channel without one can never send."""
    if not token.strip():
        raise ValidationError(
            f"access_token: a {spec.kind} channel needs its {spec.credential_name}",
            details={"field": "access_token"},
        )
    return cipher.seal({spec.credential_key: token.strip()})


def _base_url(base_url: str) -> str:
    if not base_url.startswith(("http://", "https://")):
        raise ValidationError("base_url must be an http(s) URL", details={"field": "base_url"})
    return base_url.rstrip("/")


@dataclass(frozen=True)
class WebPacing:
    """Pacing a new web channel gets unless told otherwise: conservative, because a
    WhatsApp Web number that sends like a machine gets banned."""

    rate_per_second: float = 0.5
    chat_interval_seconds: float = 4.0
    chat_jitter_seconds: float = 3.0


def _check_pacing(rate_per_second: float, pair_burst: int, pair_interval_seconds: float) -> None:
    if rate_per_second <= 0:
        raise ValidationError(
            "rate_per_second must be positive", details={"field": "rate_per_second"}
        )
    if pair_burst < 1:
        raise ValidationError("pair_burst must be at least 1", details={"field": "pair_burst"})
    if pair_interval_seconds < 0:
        raise ValidationError(
            "pair_interval_seconds must be >= 0", details={"field": "pair_interval_seconds"}
        )


def _check_web_pacing(chat_jitter_seconds: float, daily_cap: int | None) -> None:
    if chat_jitter_seconds < 0:
        raise ValidationError(
            "chat_jitter_seconds must be >= 0", details={"field": "chat_jitter_seconds"}
        )
    if daily_cap is not None and daily_cap < 1:
        raise ValidationError("daily_cap must be at least 1", details={"field": "daily_cap"})


@dataclass(frozen=True)
class Removal:
    """What removing a channel did: its id, and how many queued messages were failed."""

    channel_id: str
    failed_messages: int


@dataclass(frozen=True)
class CheckResult:
    """A channel check: the channel as stored after it, and the provider's refusal."""

    channel: dict[str, Any]
    ok: bool
    error: WahubError | None


class Channels:
    """Channels: provider connections, their sealed credentials and templates.

    Every method that takes a channel accepts its id or its name (``ref``).
    """

    def __init__(
        self, db: Database, cipher: CredentialCipher, *, web_pacing: WebPacing | None = None
    ) -> None:
        self.db = db
        self.cipher = cipher
        self.web_pacing = web_pacing or WebPacing()

    async def create(
        self,
        *,
        name: str,
        access_token: str = "",
        phone_number_id: str | None = None,
        base_url: str | None = None,
        api_version: str = "21.0",
        phone_number: str | None = None,
        rate_per_second: float | None = None,
        pair_burst: int | None = None,
        pair_interval_seconds: float | None = None,
        kind: str = "cloudapi",
        channel_id: str | None = None,
        enforce_service_window: bool | None = None,
        chat_jitter_seconds: float | None = None,
        daily_cap: int | None = None,
    ) -> dict[str, Any]:
        """Add a provider connection, ``unverified`` until a send or a check succeeds.

        ``kind`` is ``cloudapi`` (``phone_number_id`` required, ``access_token`` is the
        Graph API token) or ``whapi`` (``access_token`` is the WHAPI channel token;
        ``phone_number``, the channel's own number, is stored as E.164 and tells groups
        we left from groups we are in; ``phone_number_id`` is optional) or ``periskope``
        (``access_token`` is the organisation's API key; ``phone_number``, required, is the
        org phone sent as ``x-phone``; used for chat names, not for sending) or ``web``
        (a WhatsApp Web session: no token, the phone is linked by QR or pairing code
        through the session API; ``base_url`` is WhatsApp's own, or a sandbox's URL).
        ``base_url`` defaults to the provider's public API. The token is stored sealed.
        Pacing left unset gets the kind's defaults: 80/s, 45 per 6 s to one recipient
        for the APIs; ``WebPacing`` for web channels, whose ``daily_cap`` (None: the
        setting) holds while the number was linked less than a week ago.

        Raises ValidationError on bad values (an empty token among them), and
        DuplicateChannel when another channel has this name or this kind and
        ``phone_number_id``.
        """
        spec = _spec(kind)
        name = _name(name)
        given = {"phone_number_id": phone_number_id, "phone_number": phone_number}
        for field, refusal in spec.required.items():
            if not (given.get(field) or "").strip():
                raise ValidationError(refusal, details={"field": field})
        web = spec.supports(Capability.SESSION)
        # A session kind's credential is the linked phone, kept by the session process.
        credentials = (
            self.cipher.seal({}) if web else _sealed_token(self.cipher, spec, access_token)
        )
        if spec.phone_number_is_ours and phone_number is not None:
            phone_number = normalize_phone(phone_number, field="phone_number")
        base_url = _base_url(base_url or spec.default_base_url)
        if rate_per_second is None:
            rate_per_second = self.web_pacing.rate_per_second if web else 80.0
        if pair_burst is None:
            pair_burst = 1 if web else 45
        if pair_interval_seconds is None:
            pair_interval_seconds = self.web_pacing.chat_interval_seconds if web else 6.0
        if chat_jitter_seconds is None:
            chat_jitter_seconds = self.web_pacing.chat_jitter_seconds if web else 0.0
        _check_pacing(rate_per_second, pair_burst, pair_interval_seconds)
        _check_web_pacing(chat_jitter_seconds, daily_cap)
        row = {
            "id": channel_id or new_id("ch"),
            "kind": kind,
            "name": name,
            "phone_number": phone_number,
            "phone_number_id": (phone_number_id or "").strip() or None,
            "base_url": base_url,
            "api_version": api_version,
            "credentials": credentials,
            "rate_per_second": rate_per_second,
            "pair_burst": pair_burst,
            "pair_interval_seconds": pair_interval_seconds,
            "status": "unverified",
            # Meta refuses free-form messages outside the 24-hour window; a Cloud API
            # look-alike elsewhere (the sandbox, a test double) does not, so by default
            # only channels talking to Meta get the rule.
            "enforce_service_window": (
                urlsplit(base_url).hostname in META_HOSTS
                if enforce_service_window is None
                else enforce_service_window
            ),
            "created_at": time.time(),
            "chat_jitter_seconds": chat_jitter_seconds,
            "daily_cap": daily_cap,
        }
        if web:
            # Started at once (as WAHA does): the session process begins pairing, so a
            # QR is there to scan; ``stop`` holds it.
            row.update(
                status="unverified",
                session_state="stopped",
                session_desired="running",
                enforce_service_window=False,
            )
        async with self.db.transaction() as conn:
            await q.lock_channel_writes(conn)
            await _refuse_duplicate(conn, row)
            await q.insert_channel(conn, row)
        return public_channel(row)

    async def set_base_url(self, channel_id: str, base_url: str) -> None:
        """Point a channel at another API base URL (the sandbox of the current run).

        Raises ValidationError for a URL that is not http(s), NotFound for no channel.
        """
        if not base_url.startswith(("http://", "https://")):
            raise ValidationError("base_url must be an http(s) URL", details={"field": "base_url"})
        async with self.db.transaction() as conn:
            if await q.get_channel(conn, channel_id) is None:
                raise NotFound(f"no channel {channel_id!r}")
            await q.set_channel_base_url(conn, channel_id, base_url.rstrip("/"))

    async def get(self, ref: str) -> dict[str, Any]:
        """The channel ``ref`` (id or name) names. Raises NotFound."""
        async with self.db.read() as conn:
            return public_channel(await _find(conn, ref))

    async def list_all(self) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            return [public_channel(c) for c in await q.list_channels(conn)]

    async def update(
        self,
        ref: str,
        *,
        name: str | None = None,
        access_token: str | None = None,
        phone_number_id: str | None = None,
        phone_number: str | None = None,
        base_url: str | None = None,
        api_version: str | None = None,
        rate_per_second: float | None = None,
        pair_burst: int | None = None,
        pair_interval_seconds: float | None = None,
        enforce_service_window: bool | None = None,
        paused: bool | None = None,
        chat_jitter_seconds: float | None = None,
        daily_cap: int | None = None,
    ) -> dict[str, Any]:
        """Change what is given (None keeps the stored value) and return the channel.

        A new token, base URL or number makes the channel ``unverified`` again until a
        send or a check proves it. A paused channel is left alone by the workers: its
        messages stay queued until it is resumed. Raises NotFound, ValidationError and
        DuplicateChannel like ``create``.
        """
        values: dict[str, Any] = {}
        if name is not None:
            values["name"] = _name(name)
        if base_url is not None:
            values["base_url"] = _base_url(base_url)
        if api_version is not None:
            if not api_version.strip():
                raise ValidationError(
                    "api_version must not be empty", details={"field": "api_version"}
                )
            values["api_version"] = api_version.strip()
        if phone_number_id is not None:
            if not phone_number_id.strip():
                raise ValidationError(
                    "phone_number_id must not be empty", details={"field": "phone_number_id"}
                )
            values["phone_number_id"] = phone_number_id.strip()
        for field, value in (
            ("rate_per_second", rate_per_second),
            ("pair_burst", pair_burst),
            ("pair_interval_seconds", pair_interval_seconds),
            ("enforce_service_window", enforce_service_window),
            ("paused", paused),
            ("chat_jitter_seconds", chat_jitter_seconds),
            ("daily_cap", daily_cap),
        ):
            if value is not None:
                values[field] = value
        async with self.db.transaction() as conn:
            await q.lock_channel_writes(conn)
            channel = await _find(conn, ref)
            spec = _spec(channel["kind"])
            if access_token is not None and spec.supports(Capability.SESSION):
                raise ValidationError(
                    "access_token: a web channel has no token (its phone is linked by QR)",
                    details={"field": "access_token"},
                )
            if access_token is not None:
                values["credentials"] = _sealed_token(self.cipher, spec, access_token)
            if phone_number is not None:
                values["phone_number"] = (
                    normalize_phone(phone_number, field="phone_number")
                    if spec.phone_number_is_ours
                    else phone_number
                )
            merged = {**channel, **values}
            _check_pacing(
                merged["rate_per_second"], merged["pair_burst"], merged["pair_interval_seconds"]
            )
            _check_web_pacing(merged["chat_jitter_seconds"], merged["daily_cap"])
            if {"credentials", "base_url", "phone_number_id", "api_version"} & values.keys():
                values.update(status="unverified", verified_at=None)
            await _refuse_duplicate(conn, merged)
            if values:
                await q.update_channel(conn, channel["id"], values)
            return public_channel({**channel, **values})

    async def remove(self, ref: str, *, force: bool = False) -> Removal:
        """Remove a channel: it leaves every list, its name and number are free again,
        and its token is erased. Its messages and chats keep referring to it.

        Refused with ConflictError while it has messages queued, sending or uncertain,
        unless ``force``: then its queued messages fail at once with ``channel_removed``
        (they were never handed to the provider). Sending and uncertain ones may have
        reached it, so they are left to settle by their send result or status webhook; if
        one would be sent again (a retry, a resend), the worker fails it with the same
        code instead, once it has re-read its channels (every second): a retry due
        before that still goes out. Raises NotFound.
        """
        now = time.time()
        async with self.db.transaction() as conn:
            channel = await _find(conn, ref)
            unfinished = await q.count_unfinished_messages(conn, channel["id"])
            if unfinished and not force:
                counts = ", ".join(f"{n} {status}" for status, n in sorted(unfinished.items()))
                raise ConflictError(
                    f"channel {channel['name']!r} still has messages to send ({counts}): "
                    "wait for them, or remove it with force to fail the queued ones",
                    details={"channel": channel["id"], "messages": unfinished},
                )
            failed = await message_q.fail_queued_of_channel(
                conn,
                channel["id"],
                now=now,
                code=CHANNEL_REMOVED,
                title=f"channel {channel['name']!r} was removed before this message was sent",
            )
            await q.update_channel(
                conn,
                channel["id"],
                {"removed_at": now, "credentials": self.cipher.seal({})},
            )
        return Removal(channel_id=channel["id"], failed_messages=len(failed))

    async def check(self, ref: str, providers: ProviderRegistry) -> CheckResult:
        """Prove the channel ``ref`` names with a provider call that changes nothing
        (Cloud API: its phone number node; WHAPI: one group listed). Success stores
        ``connected`` and ``verified_at``; a failure is reported, not raised, and leaves
        the status as it was (a network error disproves nothing). Raises NotFound, and
        ValidationError for a kind that cannot send (periskope)."""
        async with self.db.read() as conn:
            channel = await _find(conn, ref)
        try:
            await providers.for_channel(channel).check()
        except (ProviderError, CredentialsUnreadable) as exc:
            return CheckResult(public_channel(channel), ok=False, error=exc)
        async with self.db.transaction() as conn:
            await q.mark_channel_verified(conn, channel["id"], now=time.time())
            proved = await q.get_channel(conn, channel["id"])
        assert proved is not None
        return CheckResult(public_channel(proved), ok=True, error=None)

    async def rotate_credentials(self) -> int:
        """Re-seal every channel's credentials (removed ones too) under the first key;
        plaintext left by an older wahub is sealed. All or nothing: if any channel's
        credentials do not open with the configured keys, nothing changes and
        CredentialsUnreadable names every such channel. Returns how many were re-sealed.
        """
        async with self.db.transaction() as conn:
            rows = await q.list_channels(conn, include_removed=True)
            resealed: dict[str, str] = {}
            unreadable: list[str] = []
            for row in rows:
                try:
                    resealed[row["id"]] = self.cipher.reseal(
                        row["credentials"], channel=channel_label(row)
                    )
                except CredentialsUnreadable:
                    unreadable.append(channel_label(row))
            if unreadable:
                raise CredentialsUnreadable(
                    f"nothing was re-sealed: the credentials of {', '.join(unreadable)} do "
                    f"not decrypt with {self.cipher.source} (keep the old key in the list, "
                    "after the new one, until the rotation is done)",
                    details={"channels": unreadable},
                )
            for channel_id, sealed in resealed.items():
                await q.update_channel(conn, channel_id, {"credentials": sealed})
        return len(resealed)

    async def unreadable(self) -> list[str]:
        """A readable error for each channel whose credentials do not open (a start-up
        check: the hub runs, and those channels' sends fail saying why)."""
        async with self.db.read() as conn:
            rows = await q.list_channels(conn)
        problems: list[str] = []
        for row in rows:
            try:
                self.cipher.open(row["credentials"], channel=channel_label(row))
            except CredentialsUnreadable as exc:
                problems.append(exc.message)
        return problems

    async def add_template(
        self, ref: str, *, name: str, language: str, body_parameters: int, category: str
    ) -> dict[str, Any]:
        """Register (or replace) an approved template on the channel ``ref`` names."""
        if body_parameters < 0:
            raise ValidationError(
                "body_parameters must be >= 0", details={"field": "body_parameters"}
            )
        async with self.db.transaction() as conn:
            channel = await _find(conn, ref)
            row = {
                "channel_id": channel["id"],
                "name": name,
                "language": language,
                "body_parameters": body_parameters,
                "category": category,
                "created_at": time.time(),
            }
            await q.upsert_template(conn, row)
        return row

    async def list_templates(self, ref: str) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            channel = await _find(conn, ref)
            return await q.list_templates(conn, channel["id"])

    async def register_group(
        self, *, chat_id: str, name: str | None, channel_id: str | None, readonly: bool = False
    ) -> dict[str, Any]:
        """Register a WhatsApp group by its JID so it can be assigned and sent to."""
        if not chat_id.endswith(GROUP_SUFFIX):
            raise ValidationError(
                "chat_id: a group id ends with @g.us", details={"field": "chat_id"}
            )
        canonical = canonical_chat_id(chat_id, field="chat_id")
        now = time.time()
        row = {
            "chat_id": canonical,
            "kind": "group",
            "channel_id": channel_id,
            "name": name,
            "name_source": "api" if name else None,
            "name_updated_at": now if name else None,
            "readonly": readonly,
            "created_at": now,
        }
        async with self.db.transaction() as conn:
            if channel_id is not None:
                channel = await q.find_channel(conn, channel_id)
                if channel is None:
                    raise ValidationError(
                        f"channel_id: unknown channel {channel_id!r}",
                        details={"field": "channel_id"},
                    )
                row["channel_id"] = channel["id"]
            await q.upsert_group_chat(conn, row)
            stored = await q.get_chat(conn, canonical)
        assert stored is not None
        return stored

    async def list_chats(self, chat_ids: list[str] | None = None) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            return await q.list_chats(conn, chat_ids)
