"""Administration: channels and templates, groups, employee groups, API keys.

Reads (channels, templates, chats) are open to every role, because agents need channel
ids and group ids to send; everything that changes configuration needs an admin key.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, SecretStr, StrictBool, StrictFloat, StrictInt
from starlette.responses import Response

from wahub.api.auth import ActorDep, AdminDep, HubDep
from wahub.api.bodies import JsonBodyRoute
from wahub.api.params import ChannelPath, IdPath, NamePath
from wahub.api.responses import JsonResponse
from wahub.api.serializers import (
    ChannelCheckOut,
    ChannelList,
    ChannelOut,
    ChannelRemovedOut,
    ChatList,
    ChatOut,
    CreatedKeyOut,
    KeyList,
    TemplateList,
    TemplateOut,
    channel_out,
    chat_out,
    created_key_out,
    key_out,
    template_out,
)
from wahub.domain.actors import Role
from wahub.domain.errors import NotFound, WahubError

router = APIRouter(prefix="/v1", tags=["admin"], route_class=JsonBodyRoute)

EmployeeGroupName = NamePath


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChannelCreate(_Body):
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["cloudapi", "whapi", "periskope", "web"] = "cloudapi"
    phone_number_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Cloud API phone number id (required for cloudapi; optional for whapi).",
    )
    access_token: SecretStr | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="Cloud API access token, WHAPI channel token or Periskope API key "
        "(required for those kinds; web channels have none). Stored; never returned.",
    )
    base_url: str | None = Field(
        default=None,
        max_length=500,
        description="Default: https://graph.facebook.com (cloudapi), https://gate.whapi.cloud "
        "(whapi), https://web.whatsapp.com (web; a sandbox's URL links a sandbox phone).",
    )
    api_version: str = Field(default="21.0", min_length=1, max_length=16)
    phone_number: str | None = Field(
        default=None,
        max_length=32,
        description="The channel's own number; for whapi it tells groups we left (E.164).",
    )
    rate_per_second: StrictFloat | None = Field(
        default=None, gt=0, le=10_000, description="Default 80; web channels 0.5."
    )
    pair_burst: StrictInt | None = Field(
        default=None, ge=1, le=10_000, description="Default 45; web channels 1."
    )
    pair_interval_seconds: StrictFloat | None = Field(
        default=None, ge=0, le=86_400, description="Default 6; web channels 4."
    )
    enforce_service_window: StrictBool | None = Field(
        default=None,
        description="Refuse free-form sends outside the 24-hour customer-service window "
        "(422 outside_service_window). Default: on for channels at graph.facebook.com.",
    )
    chat_jitter_seconds: StrictFloat | None = Field(
        default=None,
        ge=0,
        le=3600,
        description="Random extra spacing (0..this s) per send to one chat. Default 0; "
        "web channels WAHUB_WEB_CHAT_JITTER_SECONDS.",
    )
    daily_cap: StrictInt | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="web channels: messages a day while the number is under a week "
        "linked (default WAHUB_WEB_NEW_NUMBER_DAILY_CAP); set, it holds at any age.",
    )


class ChannelUpdate(_Body):
    """Only the fields given change."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    access_token: SecretStr | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="A new token (stored sealed; the channel is unverified until proved).",
    )
    phone_number_id: str | None = Field(default=None, min_length=1, max_length=64)
    phone_number: str | None = Field(default=None, max_length=32)
    base_url: str | None = Field(default=None, max_length=500)
    api_version: str | None = Field(default=None, min_length=1, max_length=16)
    rate_per_second: StrictFloat | None = Field(default=None, gt=0, le=10_000)
    pair_burst: StrictInt | None = Field(default=None, ge=1, le=10_000)
    pair_interval_seconds: StrictFloat | None = Field(default=None, ge=0, le=86_400)
    enforce_service_window: StrictBool | None = None
    paused: StrictBool | None = Field(
        default=None, description="true: workers leave its messages queued until false."
    )
    chat_jitter_seconds: StrictFloat | None = Field(default=None, ge=0, le=3600)
    daily_cap: StrictInt | None = Field(default=None, ge=1, le=1_000_000)


class TemplateCreate(_Body):
    name: str = Field(pattern=r"^[a-z0-9_]{1,512}$")
    language: str = Field(pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$", examples=["en_US"])
    body_parameters: StrictInt = Field(default=0, ge=0, le=100)
    category: str = Field(default="utility", pattern=r"^(utility|marketing|authentication)$")


class ChatCreate(_Body):
    chat_id: str = Field(min_length=1, max_length=120, examples=["120363012345678901@g.us"])
    name: str | None = Field(default=None, max_length=300)
    channel_id: str | None = Field(default=None, max_length=40)
    readonly: StrictBool = Field(
        default=False, description="Our number is not a participant: sends are refused."
    )


class MemberAdd(_Body):
    user: str = Field(min_length=1, max_length=200)


class ChatAssign(_Body):
    chat_id: str = Field(min_length=1, max_length=120)


class KeyCreate(_Body):
    user: str = Field(min_length=1, max_length=200, description="Created if new.")
    role: Role
    channels: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Channel ids or names the key is limited to (sends, reads, the stream); "
        "omitted: every channel. A limited key cannot use admin routes.",
    )
    read_only: StrictBool = Field(default=False, description="Reads only, whatever the role.")


@router.post("/channels", status_code=201, response_model=ChannelOut, tags=["channels"])
async def create_channel(body: ChannelCreate, hub: HubDep, _admin: AdminDep) -> Response:
    """Add a Cloud API, WHAPI or Periskope connection, unverified until a send proves it,
    or a WhatsApp Web channel (kind ``web``, no token: its session starts pairing at once;
    link the phone with GET .../session/qr or POST .../session/pairing-code).
    The token is stored sealed and never shown again; an empty token is 422, a name or a
    (kind, phone_number_id) another channel has is 409 ``duplicate_channel``."""
    channel = await hub.channels.create(
        name=body.name,
        kind=body.kind,
        phone_number_id=body.phone_number_id,
        access_token=body.access_token.get_secret_value() if body.access_token else "",
        base_url=body.base_url,
        api_version=body.api_version,
        phone_number=body.phone_number,
        rate_per_second=body.rate_per_second,
        pair_burst=body.pair_burst,
        pair_interval_seconds=body.pair_interval_seconds,
        enforce_service_window=body.enforce_service_window,
        chat_jitter_seconds=body.chat_jitter_seconds,
        daily_cap=body.daily_cap,
    )
    return JsonResponse(channel_out(channel), status_code=201)


@router.get("/channels", response_model=ChannelList, tags=["channels"])
async def list_channels(hub: HubDep, actor: ActorDep) -> Response:
    """Every channel; for a key limited to channels, those."""
    channels = [c for c in await hub.channels.list_all() if actor.may_use_channel(c["id"])]
    return JsonResponse({"data": [channel_out(c) for c in channels]})


@router.get("/channels/{channel}", response_model=ChannelOut, tags=["channels"])
async def get_channel(channel: ChannelPath, hub: HubDep, actor: ActorDep) -> Response:
    """One channel, by id or name (404 for a key limited to other channels)."""
    found = await hub.channels.get(channel)
    if not actor.may_use_channel(found["id"]):
        raise NotFound(f"no channel {channel}")
    return JsonResponse(channel_out(found))


@router.patch("/channels/{channel}", response_model=ChannelOut, tags=["channels"])
async def update_channel(
    channel: ChannelPath, body: ChannelUpdate, hub: HubDep, _admin: AdminDep
) -> Response:
    """Rename, re-token, re-pace, pause or resume a channel (by id or name). A new token,
    URL or number makes it unverified again; a name or number another channel has is 409."""
    token = body.access_token.get_secret_value() if body.access_token is not None else None
    updated = await hub.channels.update(
        channel,
        name=body.name,
        access_token=token,
        phone_number_id=body.phone_number_id,
        phone_number=body.phone_number,
        base_url=body.base_url,
        api_version=body.api_version,
        rate_per_second=body.rate_per_second,
        pair_burst=body.pair_burst,
        pair_interval_seconds=body.pair_interval_seconds,
        enforce_service_window=body.enforce_service_window,
        paused=body.paused,
        chat_jitter_seconds=body.chat_jitter_seconds,
        daily_cap=body.daily_cap,
    )
    return JsonResponse(channel_out(updated))


@router.post("/channels/{channel}/check", response_model=ChannelCheckOut, tags=["channels"])
async def check_channel(channel: ChannelPath, hub: HubDep, _admin: AdminDep) -> Response:
    """Prove a channel's token with a provider call that sends nothing (Cloud API: its
    phone number; WHAPI: one group). ``ok`` true stores ``connected``; false carries the
    provider's refusal as ``error`` and changes nothing."""
    result = await hub.channels.check(channel, hub.providers)
    error = (
        None
        if result.error is None
        else {"code": _error_code(result.error), "message": result.error.message}
    )
    return JsonResponse({"ok": result.ok, "channel": channel_out(result.channel), "error": error})


def _error_code(exc: WahubError) -> str:
    provider_code = getattr(exc, "provider_code", None)
    return exc.code if provider_code is None else str(provider_code)


@router.delete("/channels/{channel}", response_model=ChannelRemovedOut, tags=["channels"])
async def remove_channel(
    channel: ChannelPath,
    hub: HubDep,
    _admin: AdminDep,
    force: Annotated[
        bool,
        Query(
            description="Remove even with messages queued: those fail with channel_removed; "
            "sending and uncertain ones settle as usual."
        ),
    ] = False,
) -> Response:
    """Remove a channel (by id or name): 409 while it has messages queued, sending or
    uncertain, unless ``force``. Its messages and chats stay; its token is erased."""
    removal = await hub.channels.remove(channel, force=force)
    return JsonResponse(
        {"id": removal.channel_id, "removed": True, "failed_messages": removal.failed_messages}
    )


@router.post(
    "/channels/{channel}/templates",
    status_code=201,
    response_model=TemplateOut,
    tags=["channels"],
)
async def add_template(
    channel: ChannelPath, body: TemplateCreate, hub: HubDep, _admin: AdminDep
) -> Response:
    """Register (or update) an approved template, so sends naming it are checked early."""
    template = await hub.channels.add_template(
        channel,
        name=body.name,
        language=body.language,
        body_parameters=body.body_parameters,
        category=body.category,
    )
    return JsonResponse(template_out(template), status_code=201)


@router.get("/channels/{channel}/templates", response_model=TemplateList, tags=["channels"])
async def list_templates(channel: ChannelPath, hub: HubDep, _actor: ActorDep) -> Response:
    templates = await hub.channels.list_templates(channel)
    return JsonResponse({"data": [template_out(t) for t in templates]})


@router.post("/chats", status_code=201, response_model=ChatOut, tags=["chats"])
async def register_group(body: ChatCreate, hub: HubDep, _admin: AdminDep) -> Response:
    """Register a WhatsApp group by its JID (or update its name/readonly flag)."""
    chat = await hub.channels.register_group(
        chat_id=body.chat_id, name=body.name, channel_id=body.channel_id, readonly=body.readonly
    )
    return JsonResponse(chat_out(chat), status_code=201)


@router.get("/chats", response_model=ChatList, tags=["chats"])
async def list_chats(hub: HubDep, actor: ActorDep) -> Response:
    """Admins and viewers see every chat; agents only the chats assigned to them."""
    visible = await hub.access.visible_chat_ids(actor)
    chats = [] if visible == [] else await hub.channels.list_chats(visible)
    # A key limited to channels sees the chats of those (a chat of no channel: none).
    chats = [c for c in chats if actor.may_use_channel(c["channel_id"])]
    return JsonResponse({"data": [chat_out(c) for c in chats]})


@router.post("/employee-groups/{name}/members", tags=["access"])
async def add_employee_group_member(
    name: EmployeeGroupName, body: MemberAdd, hub: HubDep, _admin: AdminDep
) -> Response:
    """Put a user into an employee group (both created if new). Idempotent."""
    await hub.access.add_member(group_name=name, user_name=body.user)
    return JsonResponse({"employee_group": name, "user": body.user})


@router.post("/employee-groups/{name}/chats", tags=["access"])
async def assign_chat_to_employee_group(
    name: EmployeeGroupName, body: ChatAssign, hub: HubDep, _admin: AdminDep
) -> Response:
    """Let the members of an employee group send to a registered chat. Idempotent."""
    await hub.access.assign_chat(group_name=name, chat_id=body.chat_id)
    return JsonResponse({"employee_group": name, "chat_id": body.chat_id})


@router.post("/keys", status_code=201, response_model=CreatedKeyOut, tags=["access"])
async def create_key(body: KeyCreate, hub: HubDep, _admin: AdminDep) -> Response:
    """Create an API key. The key is in this response only: it is stored hashed."""
    created = await hub.access.create_key(
        user_name=body.user, role=body.role.value, channels=body.channels, read_only=body.read_only
    )
    return JsonResponse(created_key_out(created), status_code=201)


@router.get("/keys", response_model=KeyList, tags=["access"])
async def list_keys(hub: HubDep, _admin: AdminDep) -> Response:
    """Every key's metadata (prefix, role, user); never a secret or a hash."""
    rows = await hub.access.list_keys()
    return JsonResponse({"data": [key_out(r) for r in rows]})


@router.delete("/keys/{key_id}", status_code=204, tags=["access"])
async def revoke_key(key_id: IdPath, hub: HubDep, _admin: AdminDep) -> Response:
    """Revoke a key; requests with it are refused from now on."""
    await hub.access.revoke_key(key_id)
    return Response(status_code=204)
