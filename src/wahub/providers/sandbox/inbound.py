"""Simulated inbound traffic: leads writing to us, in each provider's webhook shape.

``POST /_sandbox/inbound`` makes messages and POSTs them to the provider's configured
webhook URL, signed the provider's way, through the same sender pool (retries with
backoff, ``duplicate_fraction``) as the status webhooks:

- ``cloudapi``: Meta's ``messages`` envelope to ``webhook_url``, ``X-Hub-Signature-256``
  with ``app_secret`` (PROVIDERS.md 1.4);
- ``whapi``: ``messages.post`` to ``whapi_webhook_url`` with ``?secret=<whapi_webhook_secret>``
  (WHAPI signs nothing, 2.4);
- ``periskope``: ``message.created`` to ``periskope_webhook_url``, ``x-periskope-signature``
  = hex HMAC-SHA256 of the body with ``periskope_signing_key`` (3.3).

Request body (every field optional)::

    {"provider": "cloudapi", "count": 1, "kinds": ["text"],
     "from": ["+4915112345678"] | "random", "chat_id": "1203...@g.us",
     "reply_to": "<provider message id>", "channel": "<phone_number_id>"}

``kinds`` are used in turn (``text, reply, image, document, reaction, location,
interactive, unsupported``; Periskope has text, reply, image and document). ``reply``,
``reaction`` and ``interactive`` answer a message: ``reply_to`` if given, else the
sandbox's most recent sends on that provider, newest first, each answered from its
recipient (a lead replying to what we sent). ``from`` defaults to those recipients for
answers and to random numbers otherwise; on Periskope, random senders are people of its
chat directory, so chat names resolve. ``chat_id`` (a group) makes the messages group
messages from the senders (WHAPI, Periskope). The answer lists what was emitted, and
``GET /_sandbox/inbound`` everything emitted since the last reset.

``inbound_trickle_per_minute`` > 0 emits a random trickle of such messages (kinds from
``inbound_trickle_kinds``, providers from ``inbound_trickle_providers`` that have a URL),
for the demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import logging
import random
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from aiohttp import web
from yarl import URL

from wahub.providers.sandbox.config import INBOUND_KINDS, INBOUND_PROVIDERS, SandboxConfig
from wahub.providers.sandbox.shapes import signature_header
from wahub.providers.sandbox.state import SendRecord

logger = logging.getLogger(__name__)

MAX_COUNT: Final = 1000

# Kinds answering an earlier message (they need a target id).
ANSWER_KINDS: Final = frozenset({"reply", "reaction", "interactive"})

KINDS_BY_PROVIDER: Final[Mapping[str, tuple[str, ...]]] = {
    "cloudapi": INBOUND_KINDS,
    "whapi": INBOUND_KINDS,
    # Periskope documents chat, image, video, audio, document and ptt messages; its
    # reactions and interactive replies are unconfirmed, so the sandbox does not invent them.
    "periskope": ("text", "reply", "image", "document"),
}

_NAMES: Final = ("Ana Costa", "Ben Okafor", "Chloe Martin", "Deniz Aydin", "Elif Kaya",
                 "Felix Braun", "Grace Lee", "Hugo Silva", "Ines Moreau",
                 "Jonas Weber")  # fmt: skip
_TEXTS: Final = ("Hi, is this still available?", "Yes please, send me the details",
                 "Can we talk tomorrow?", "What is the price?", "Thanks!",
                 "I am interested", "Where are you located?")  # fmt: skip


class InboundRefused(ValueError):
    """The request cannot be served; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class InboundRequest:
    provider: str = "cloudapi"
    count: int = 1
    kinds: tuple[str, ...] = ("text",)
    senders: tuple[str, ...] | None = None  # digits; None = default (see module doc)
    chat_id: str | None = None
    reply_to: str | None = None
    channel: str | None = None


@dataclass(slots=True)
class InboundRecord:
    """One emitted message (the JSON of ``GET /_sandbox/inbound``). ``sender`` and
    ``chat_id`` are as the provider writes them; ``body`` is the webhook JSON."""

    provider: str
    message_id: str
    kind: str
    chat_id: str
    sender: str
    reply_to: str | None
    text: str | None
    emitted_at: float
    body: dict[str, Any]


def parse_request(raw: Any) -> InboundRequest:
    """Validate the control route's JSON; ``InboundRefused`` (400) names the bad field."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InboundRefused("body must be a JSON object")
    unknown = set(raw) - {"provider", "count", "kinds", "from", "chat_id", "reply_to", "channel"}
    if unknown:
        raise InboundRefused(f"unknown field(s): {', '.join(sorted(unknown))}")
    provider = raw.get("provider", "cloudapi")
    if provider not in INBOUND_PROVIDERS:
        raise InboundRefused(f"provider must be one of {', '.join(INBOUND_PROVIDERS)}")
    count = raw.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_COUNT:
        raise InboundRefused(f"count must be an integer in 1..{MAX_COUNT}")
    kinds = raw.get("kinds", ["text"])
    if isinstance(kinds, str):
        kinds = [kinds]
    allowed = KINDS_BY_PROVIDER[provider]
    if not isinstance(kinds, list) or not kinds or any(k not in allowed for k in kinds):
        raise InboundRefused(f"kinds on {provider} must be a list of {', '.join(allowed)}")
    senders = _senders(raw.get("from"))
    chat_id = _optional_text(raw, "chat_id")
    if chat_id is not None:
        if not chat_id.endswith("@g.us"):
            raise InboundRefused("chat_id must be a group id (...@g.us); people are 'from'")
        if provider == "cloudapi":
            raise InboundRefused("group messages are simulated on whapi and periskope only")
    return InboundRequest(
        provider=provider,
        count=count,
        kinds=tuple(kinds),
        senders=senders,
        chat_id=chat_id,
        reply_to=_optional_text(raw, "reply_to"),
        channel=_optional_text(raw, "channel"),
    )


def _senders(raw: Any) -> tuple[str, ...] | None:
    if raw is None or raw == "random":
        return None
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise InboundRefused('from must be "random" or a list of phone numbers')
    digits: list[str] = []
    for item in raw:
        text = item.strip().removeprefix("+") if isinstance(item, str) else ""
        if not (text.isascii() and text.isdigit() and 7 <= len(text) <= 15):
            raise InboundRefused(f"from: {item!r} is not a phone number (E.164 or digits)")
        digits.append(text)
    return tuple(digits)


def _optional_text(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InboundRefused(f"{key} must be a non-empty string")
    return value.strip()


@dataclass(frozen=True, slots=True)
class _Plan:
    """One message to make: who writes where, answering what."""

    kind: str
    sender: str  # digits
    group: str | None  # group JID, or None for a one-to-one chat
    target: str | None
    channel: str | None


class InboundGenerator:
    """Makes simulated inbound webhooks and hands them to ``post(url, body, headers)``.

    ``sends`` gives the sandbox's send log (to answer recent sends); ``periskope_people``
    the person ids of the Periskope directory (random Periskope senders).
    """

    def __init__(
        self,
        config: Callable[[], SandboxConfig],
        rng: random.Random,
        sends: Callable[[], Sequence[SendRecord]],
        periskope_people: Callable[[], Sequence[str]],
        post: Callable[[str, bytes, Mapping[str, str]], None],
        *,
        register_media: Callable[[str], str] | None = None,
        base_url: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._config = config
        self._rng = rng
        self._sends = sends
        self._periskope_people = periskope_people
        self._post = post
        self._register_media = register_media
        self._base_url = base_url
        self._prefix = secrets.token_hex(4).upper()
        self._serial = itertools.count(1)
        self.log: list[InboundRecord] = []

    def reset(self) -> None:
        self.log.clear()

    def mount(self, app: web.Application) -> None:
        """``POST /_sandbox/inbound`` (emit) and ``GET /_sandbox/inbound`` (the log)."""
        app.router.add_post("/_sandbox/inbound", self._handle_emit)
        app.router.add_get("/_sandbox/inbound", self._handle_log)

    async def _handle_emit(self, request: web.Request) -> web.Response:
        raw_body = await request.read()
        try:
            raw = orjson.loads(raw_body) if raw_body.strip() else None
        except orjson.JSONDecodeError:
            return _error(400, "invalid_json", "Request body is not valid JSON")
        try:
            emitted = self.emit(parse_request(raw))
        except InboundRefused as refused:
            return _error(refused.status, "invalid_inbound", str(refused))
        return _json({"emitted": emitted, "count": len(emitted)})

    async def _handle_log(self, request: web.Request) -> web.Response:
        return _json({"inbound": self.log, "count": len(self.log)})

    def emit(self, request: InboundRequest) -> list[InboundRecord]:
        """Make and queue ``request.count`` messages; the records of what was queued.

        Raises ``InboundRefused`` (409) when the provider has no webhook URL, or an
        answer kind has nothing to answer.
        """
        url, headers_for = self._target(request.provider)
        plans = self._plans(request)
        emitted: list[InboundRecord] = []
        for plan in plans:
            record = self._build(request.provider, plan)
            body = orjson.dumps(record.body)
            self._post(url, body, headers_for(body))
            emitted.append(record)
        self.log.extend(emitted)
        return emitted

    def recent_targets(self, provider: str) -> list[SendRecord]:
        """The sandbox's sends on ``provider``, newest first (what leads can answer)."""
        return [r for r in reversed(self._sends()) if r.provider == provider]

    # -- planning -------------------------------------------------------------------------

    def _plans(self, request: InboundRequest) -> list[_Plan]:
        answers = [
            r
            for r in self.recent_targets(request.provider)
            if request.chat_id is None or r.wa_id == request.chat_id
        ]
        plans: list[_Plan] = []
        for index in range(request.count):
            kind = request.kinds[index % len(request.kinds)]
            target = request.reply_to
            answered: SendRecord | None = None
            if kind in ANSWER_KINDS and target is None:
                if not answers:
                    raise InboundRefused(
                        f"nothing to answer with {kind!r} on {request.provider}: the sandbox "
                        "has recorded no send there; send one first or give reply_to",
                        status=409,
                    )
                answered = answers[index % len(answers)]
                target = answered.wamid
            group = request.chat_id
            if group is None and answered is not None and answered.wa_id.endswith("@g.us"):
                group = answered.wa_id  # answering in the group we wrote to
            sender = self._sender(request, index, answered)
            channel = request.channel
            if channel is None and request.provider == "cloudapi":
                # The number that sent what is answered, else the one that sent last: the
                # hub routes the message to the channel with that phone_number_id.
                latest = answered or (answers[0] if answers else None)
                channel = latest.phone_number_id if latest is not None else None
            plans.append(_Plan(kind, sender, group, target, channel))
        return plans

    def _sender(self, request: InboundRequest, index: int, answered: SendRecord | None) -> str:
        if request.senders is not None:
            return request.senders[index % len(request.senders)]
        if answered is not None and not answered.wa_id.endswith("@g.us"):
            return answered.wa_id
        if request.provider == "periskope":
            people = self._periskope_people()
            if people:
                return self._rng.choice(people).removesuffix("@c.us")
        return self.random_phone()

    def random_phone(self) -> str:
        """A valid-looking US number in the 415 area (digits, no ``+``)."""
        return "1415" + str(self._rng.randint(2, 9)) + f"{self._rng.randrange(10**6):06d}"

    # -- delivery target ------------------------------------------------------------------

    def _target(self, provider: str) -> tuple[str, Callable[[bytes], dict[str, str]]]:
        config = self._config()
        json_headers = {"Content-Type": "application/json"}
        if provider == "cloudapi":
            if config.webhook_url is None:
                raise InboundRefused("webhook_url is not set (POST /_sandbox/config)", 409)
            secret = config.app_secret
            return config.webhook_url, lambda body: {
                **json_headers,
                "User-Agent": "facebookexternalua",
                "X-Hub-Signature-256": signature_header(secret, body),
            }
        if provider == "whapi":
            if config.whapi_webhook_url is None:
                raise InboundRefused("whapi_webhook_url is not set (POST /_sandbox/config)", 409)
            url = URL(config.whapi_webhook_url)
            if config.whapi_webhook_secret is not None:
                url = url.update_query(secret=config.whapi_webhook_secret)
            return str(url), lambda body: dict(json_headers)
        if config.periskope_webhook_url is None:
            raise InboundRefused("periskope_webhook_url is not set (POST /_sandbox/config)", 409)
        key = config.periskope_signing_key

        def periskope_headers(body: bytes) -> dict[str, str]:
            if key is None:
                return dict(json_headers)
            digest = hmac.new(key.encode("utf-8"), body, hashlib.sha256).hexdigest()
            return {**json_headers, "x-periskope-signature": digest}

        return config.periskope_webhook_url, periskope_headers

    # -- shapes ---------------------------------------------------------------------------

    def _build(self, provider: str, plan: _Plan) -> InboundRecord:
        now = time.time()
        text = self._rng.choice(_TEXTS)
        name = self._rng.choice(_NAMES)
        serial = next(self._serial)
        if provider == "cloudapi":
            message_id = f"wamid.IN{self._prefix}{serial}"
            body, shown = self._cloudapi(plan, message_id, int(now), text, name)
        elif provider == "whapi":
            message_id = f"sbx.in{self._prefix.lower()}{serial}"
            body, shown = self._whapi(plan, message_id, int(now), text, name)
        else:
            wa_id = f"3EB0IN{self._prefix}{serial:06d}"
            chat = plan.group or f"{plan.sender}@c.us"
            message_id = f"false_{chat}_{wa_id}_{plan.sender}@c.us"
            body, shown = self._periskope(plan, message_id, wa_id, now, text)
        return InboundRecord(
            provider=provider,
            message_id=message_id,
            kind=plan.kind,
            chat_id=plan.group or plan.sender,
            sender=plan.sender,
            reply_to=plan.target,
            text=shown,
            emitted_at=now,
            body=body,
        )

    def _cloudapi(
        self, plan: _Plan, message_id: str, ts: int, text: str, name: str
    ) -> tuple[dict[str, Any], str | None]:
        config = self._config()
        message: dict[str, Any] = {"from": plan.sender, "id": message_id, "timestamp": str(ts)}
        context = (
            {"from": config.display_phone_number, "id": plan.target}
            if plan.target is not None
            else None
        )
        shown: str | None = text
        kind = plan.kind
        if kind in ("text", "reply"):
            message |= {"type": "text", "text": {"body": text}}
        elif kind == "image":
            shown = "photo of the " + self._rng.choice(("flat", "car", "invoice", "garden"))
            message |= {"type": "image", "image": self._media("image/jpeg", caption=shown)}
        elif kind == "document":
            shown = "my documents"
            message |= {
                "type": "document",
                "document": self._media("application/pdf", caption=shown, filename="docs.pdf"),
            }
        elif kind == "reaction":
            shown = "\U0001f44d"
            message |= {"type": "reaction", "reaction": {"message_id": plan.target, "emoji": shown}}
            context = None  # a reaction names its message itself
        elif kind == "location":
            shown = "Office"
            message |= {"type": "location", "location": self._location(shown)}
        elif kind == "interactive":
            shown = "Yes"
            message |= {
                "type": "interactive",
                "interactive": {
                    "type": "button_reply",
                    "button_reply": {"id": "yes", "title": shown},
                },
            }
        else:  # unsupported
            shown = None
            message |= {
                "type": "unsupported",
                "errors": [
                    {
                        "code": 131051,
                        "title": "Message type unknown",
                        "message": "Message type unknown",
                        "error_data": {"details": "Message type is currently not supported."},
                    }
                ],
            }
        if context is not None:
            message["context"] = context
        value = {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": config.display_phone_number,
                "phone_number_id": plan.channel or config.waba_id,
            },
            "contacts": [{"profile": {"name": name}, "wa_id": plan.sender}],
            "messages": [message],
        }
        envelope = {
            "object": "whatsapp_business_account",
            "entry": [{"id": config.waba_id, "changes": [{"field": "messages", "value": value}]}],
        }
        return envelope, shown

    def _whapi(
        self, plan: _Plan, message_id: str, ts: int, text: str, name: str
    ) -> tuple[dict[str, Any], str | None]:
        config = self._config()
        chat = plan.group or f"{plan.sender}@s.whatsapp.net"
        message: dict[str, Any] = {
            "id": message_id,
            "from_me": False,
            "chat_id": chat,
            "timestamp": ts,
            "source": "mobile",
            "from": plan.sender,
            "from_name": name,
        }
        shown: str | None = text
        kind = plan.kind
        if kind in ("text", "reply"):
            message |= {"type": "text", "text": {"body": text}}
        elif kind == "image":
            shown = "photo of the flat"
            message |= {
                "type": "image",
                "image": self._media("image/jpeg", link=True, caption=shown),
            }
        elif kind == "document":
            shown = "my documents"
            message |= {
                "type": "document",
                "document": self._media(
                    "application/pdf", link=True, caption=shown, file_name="docs.pdf"
                ),
            }
        elif kind == "reaction":
            shown = "\U0001f44d"
            message |= {
                "type": "action",
                "action": {"target": plan.target, "type": "reaction", "emoji": shown},
            }
        elif kind == "location":
            shown = "Office"
            message |= {"type": "location", "location": self._location(shown)}
        elif kind == "interactive":
            shown = "Yes"
            message |= {
                "type": "reply",
                "reply": {"type": "buttons_reply", "buttons_reply": {"id": "yes", "title": shown}},
            }
        else:  # unsupported: a type this hub has never heard of
            shown = None
            message |= {"type": "unknown"}
        if plan.target is not None and kind != "reaction":
            message["context"] = {"quoted_id": plan.target, "quoted_author": config.whapi_own_phone}
        envelope = {
            "messages": [message],
            "event": {"type": "messages", "event": "post"},
            "channel_id": plan.channel or config.whapi_channel_id,
        }
        return envelope, shown

    def _periskope(
        self, plan: _Plan, message_id: str, wa_id: str, now: float, text: str
    ) -> tuple[dict[str, Any], str | None]:
        config = self._config()
        org = f"{plan.channel or config.periskope_org_phone}@c.us"
        person = f"{plan.sender}@c.us"
        chat = plan.group or person
        data: dict[str, Any] = {
            "message_id": message_id,
            "unique_id": wa_id,
            "id": {
                "id": wa_id,
                "fromMe": False,
                "remote": chat,
                "_serialized": message_id,
            },
            "org_id": "sandbox-org",
            "chat_id": chat,
            "org_phone": org,
            "from_me": False,
            "from": chat if plan.group else person,
            "to": org,
            "sender_phone": plan.sender,
            "ack": "1",
            "has_media": False,
            "timestamp": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S+00"),
        }
        if plan.group:
            data["author"] = person
        shown: str | None = text
        if plan.kind in ("text", "reply"):
            data |= {"message_type": "chat", "body": text}
        else:
            image = plan.kind == "image"
            shown = "photo of the flat" if image else "my documents"
            filename = "flat.jpg" if image else "docs.pdf"
            data |= {
                "message_type": "image" if image else "document",
                "body": shown,
                "has_media": True,
                "media": {
                    "path": self._periskope_path(
                        "image/jpeg" if image else "application/pdf", wa_id, filename
                    ),
                    "size": 20480,
                    "filename": filename,
                    "mimetype": "image/jpeg" if image else "application/pdf",
                },
            }
        if plan.target is not None:
            data["quoted_message_id"] = plan.target
        envelope = {
            "event": "message.created",
            "data": data,
            "org_id": "sandbox-org",
            "timestamp": datetime.fromtimestamp(now, UTC).isoformat(),
        }
        return envelope, shown

    def _media(self, mime_type: str, *, link: bool = False, **extra: str) -> dict[str, Any]:
        # A file the media routes serve (GET /{media_id}, then its URL), when the server
        # registers them; WHAPI sends a public link beside the id.
        media_id = (
            self._register_media(mime_type)
            if self._register_media is not None
            else secrets.token_hex(8)
        )
        media: dict[str, Any] = {
            "id": media_id,
            "mime_type": mime_type,
            "sha256": hashlib.sha256(media_id.encode()).hexdigest(),
            **extra,
        }
        url = self._link(media_id) if link else None
        if url is not None:
            media["link"] = url
        return media

    def _periskope_path(self, mime_type: str, wa_id: str, filename: str) -> str:
        # A public link to a file the server serves, when it registers them.
        if self._register_media is not None and self._base_url() is not None:
            link = self._link(self._register_media(mime_type))
            if link is not None:
                return link
        return f"/sandbox/media/{wa_id}/{filename}"

    def _link(self, media_id: str) -> str | None:
        base = self._base_url()
        if base is None or self._register_media is None:
            return None
        return f"{base}/_sandbox/media/links/{media_id}"

    def _location(self, name: str) -> dict[str, Any]:
        return {
            "latitude": round(52.5 + self._rng.random() / 10, 6),
            "longitude": round(13.4 + self._rng.random() / 10, 6),
            "name": name,
            "address": "Unter den Linden 1, Berlin",
        }

    # -- trickle --------------------------------------------------------------------------

    async def trickle(self) -> None:
        """Emit ``inbound_trickle_per_minute`` messages a minute on average, until
        cancelled. Answers fall back to a first message while nothing was sent; a
        provider without a webhook URL is skipped; errors are logged, never raised."""
        while True:
            rate = self._config().inbound_trickle_per_minute
            if rate <= 0:
                await asyncio.sleep(0.25)
                continue
            # Capped so lowering the rate takes effect within a few seconds.
            await asyncio.sleep(min(self._rng.expovariate(rate / 60.0), 5.0))
            with contextlib.suppress(InboundRefused):
                self._trickle_one()

    def _trickle_one(self) -> None:
        config = self._config()
        urls = {
            "cloudapi": config.webhook_url,
            "whapi": config.whapi_webhook_url,
            "periskope": config.periskope_webhook_url,
        }
        providers = [p for p in config.inbound_trickle_providers if urls[p] is not None]
        if not providers:
            return
        provider = self._rng.choice(providers)
        kinds = [k for k in config.inbound_trickle_kinds if k in KINDS_BY_PROVIDER[provider]]
        kind = self._rng.choice(kinds) if kinds else "text"
        request = InboundRequest(provider=provider, kinds=(kind,))
        if kind in ANSWER_KINDS:
            # One of the last few sends, not always the newest: several leads answer.
            recent = self.recent_targets(provider)[:20]
            if not recent:
                request = InboundRequest(provider=provider)  # a new lead writing first
            else:
                answered = self._rng.choice(recent)
                in_group = answered.wa_id.endswith("@g.us")
                request = InboundRequest(
                    provider=provider,
                    kinds=(kind,),
                    reply_to=answered.wamid,
                    senders=None if in_group else (answered.wa_id,),
                    chat_id=answered.wa_id if in_group and provider != "cloudapi" else None,
                    channel=answered.phone_number_id if provider == "cloudapi" else None,
                )
        try:
            self.emit(request)
        except InboundRefused:
            raise
        except Exception:
            logger.exception("sandbox inbound trickle failed")


def _json(payload: Any, status: int = 200) -> web.Response:
    # orjson serialises the slotted record dataclasses directly.
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")


def _error(status: int, code: str, message: str) -> web.Response:
    return _json({"error": {"code": code, "message": message}}, status=status)
