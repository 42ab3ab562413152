"""Accounts, group directories and lookup by phone.

``/v1/accounts``: the CRM's artists, clients or customers, each linked to groups (admins
write; every role reads). Linking a group starts its sync in the background: the
response does not wait for the provider. ``POST /v1/groups/sync`` syncs now and answers
with the outcome (agents and admins). ``POST /v1/lookup`` answers "which accounts is
this phone in a group with, and with what rank" from the synced members, never calling
a provider.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from starlette.responses import Response

from wahub.api.auth import ActorDep, AdminDep, HubDep, WriterDep
from wahub.api.bodies import JsonBodyRoute
from wahub.api.params import ChatIdPath, IdPath, OffsetQuery
from wahub.api.responses import JsonResponse
from wahub.api.serializers import iso
from wahub.features.accounts import MAX_PAGE
from wahub.features.groups import AccountSyncResult, GroupSyncResult, SyncReport

router = APIRouter(prefix="/v1", route_class=JsonBodyRoute)

GroupId = Annotated[str, Field(min_length=1, max_length=120, examples=["120363298754236172"])]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccountCreate(_Body):
    name: str = Field(min_length=1, max_length=300)
    external_ref: str | None = Field(
        default=None, min_length=1, max_length=200, description="The CRM's own id (unique)."
    )
    group_ids: list[GroupId] = Field(
        default_factory=list,
        max_length=100,
        description="Group ids, with or without @g.us. Each is synced in the background.",
    )
    whatsapp_group_id: GroupId | None = Field(
        default=None, description="One group id, as the seed CRM stored it (no @g.us)."
    )
    channel_id: str | None = Field(
        default=None,
        max_length=40,
        description="The channel of groups not registered yet (default: the only channel "
        "with a group directory).",
    )


class AccountUpdate(_Body):
    name: str | None = Field(default=None, min_length=1, max_length=300)
    external_ref: str | None = Field(default=None, min_length=1, max_length=200)
    group_ids: list[GroupId] | None = Field(
        default=None, max_length=100, description="Replaces the account's groups."
    )
    whatsapp_group_id: GroupId | None = Field(
        default=None, description="Replaces the account's groups with this one."
    )
    channel_id: str | None = Field(default=None, max_length=40)


class GroupOut(BaseModel):
    chat_id: str
    name: str | None
    channel_id: str | None
    is_active: bool
    readonly: bool
    sync_status: str | None
    sync_error: str | None
    last_synced_at: str | None
    member_count: int


class AccountOut(BaseModel):
    id: str
    name: str
    external_ref: str | None
    groups: list[GroupOut]
    created_at: str
    updated_at: str


class AccountList(BaseModel):
    data: list[AccountOut]
    total: int


class SyncRequest(_Body):
    account_id: str | None = Field(
        default=None, max_length=40, description="Only this account's groups."
    )
    directory: StrictBool = Field(
        default=False,
        description="Every group the channels' directories list, not only accounts' groups.",
    )
    channel_id: str | None = Field(
        default=None, max_length=40, description="With directory: only this channel."
    )


class GroupSyncOut(BaseModel):
    chat_id: str
    status: str
    members: int
    error: str | None


class AccountSyncOut(BaseModel):
    account_id: str
    account_name: str
    status: str
    members_synced: int
    groups: list[GroupSyncOut]


class SyncOut(BaseModel):
    success_count: int
    fail_count: int
    groups: list[GroupSyncOut]
    accounts: list[AccountSyncOut]
    errors: list[str]


class LookupRequest(_Body):
    phone: str = Field(min_length=1, max_length=64, examples=["+49 151 2345 6789"])


class LookupMatch(BaseModel):
    account_id: str
    account_name: str
    external_ref: str | None
    chat_id: str
    group_name: str | None
    rank: str


class LookupOut(BaseModel):
    phone: str
    forms: list[str]
    count: int
    data: list[LookupMatch]


class MemberOut(BaseModel):
    phone: str | None
    lid: str | None
    rank: str
    synced_at: str | None


class MembersOut(BaseModel):
    group: GroupOut
    data: list[MemberOut]


class HealthOut(BaseModel):
    total_cached_members: int
    accounts_with_cache: int
    synced_groups: int
    most_recent_sync: str | None
    oldest_sync: str | None
    accounts_without_members_count: int
    accounts_without_members: list[dict[str, Any]]
    failed_syncs_count: int
    failed_syncs: list[dict[str, Any]]
    stale_groups_count: int
    stale_groups: list[dict[str, Any]]
    stale_after_hours: float


def group_out(row: dict[str, Any], member_count: int | None = None) -> dict[str, Any]:
    return {
        "chat_id": row["chat_id"],
        "name": row["name"],
        "channel_id": row["channel_id"],
        "is_active": bool(row["is_active"]),
        "readonly": bool(row["readonly"]),
        "sync_status": row["sync_status"],
        "sync_error": row["sync_error"],
        "last_synced_at": iso(row["last_synced_at"]),
        "member_count": row.get("member_count", 0) if member_count is None else member_count,
    }


def account_out(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "external_ref": row["external_ref"],
        "groups": [group_out(g) for g in row["groups"]],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def group_sync_out(result: GroupSyncResult) -> dict[str, Any]:
    return {
        "chat_id": result.chat_id,
        "status": result.status,
        "members": result.members,
        "error": result.error,
    }


def account_sync_out(result: AccountSyncResult) -> dict[str, Any]:
    return {
        "account_id": result.account_id,
        "account_name": result.account_name,
        "status": result.status,
        "members_synced": result.members_synced,
        "groups": [group_sync_out(g) for g in result.groups],
    }


def sync_out(report: SyncReport) -> dict[str, Any]:
    return {
        "success_count": report.success_count,
        "fail_count": report.fail_count,
        "groups": [group_sync_out(g) for g in report.groups],
        "accounts": [account_sync_out(a) for a in report.accounts],
        "errors": report.errors,
    }


def _group_ids(group_ids: list[str] | None, single: str | None) -> list[str] | None:
    if group_ids is None and single is None:
        return None
    return [*(group_ids or []), *([single] if single is not None else [])]


# --- accounts ----------------------------------------------------------------------------


@router.post("/accounts", status_code=201, response_model=AccountOut, tags=["accounts"])
async def create_account(body: AccountCreate, hub: HubDep, _admin: AdminDep) -> Response:
    """Create an account; its groups are synced in the background (``sync_status``
    ``pending`` until then)."""
    account = await hub.accounts.create(
        name=body.name,
        external_ref=body.external_ref,
        group_ids=_group_ids(body.group_ids, body.whatsapp_group_id) or [],
        channel_id=body.channel_id,
    )
    return JsonResponse(account_out(account), status_code=201)


@router.get("/accounts", response_model=AccountList, tags=["accounts"])
async def list_accounts(
    hub: HubDep,
    _actor: ActorDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: OffsetQuery = 0,
) -> Response:
    """Accounts by name, with their groups' sync state."""
    rows, total = await hub.accounts.list_page(limit=limit, offset=offset)
    return JsonResponse({"data": [account_out(r) for r in rows], "total": total})


@router.get("/accounts/{account_id}", response_model=AccountOut, tags=["accounts"])
async def get_account(account_id: IdPath, hub: HubDep, _actor: ActorDep) -> Response:
    return JsonResponse(account_out(await hub.accounts.get(account_id)))


@router.patch("/accounts/{account_id}", response_model=AccountOut, tags=["accounts"])
async def update_account(
    account_id: IdPath, body: AccountUpdate, hub: HubDep, _admin: AdminDep
) -> Response:
    """Change what is given. New groups are synced in the background."""
    given = body.model_fields_set
    changes: dict[str, Any] = {}
    if "name" in given and body.name is not None:
        changes["name"] = body.name
    if "external_ref" in given:
        changes["external_ref"] = body.external_ref  # null clears it
    account = await hub.accounts.update(
        account_id,
        group_ids=_group_ids(body.group_ids, body.whatsapp_group_id),
        channel_id=body.channel_id,
        **changes,
    )
    return JsonResponse(account_out(account))


@router.delete("/accounts/{account_id}", status_code=204, tags=["accounts"])
async def delete_account(account_id: IdPath, hub: HubDep, _admin: AdminDep) -> Response:
    """Delete an account. Its groups and their cached members stay."""
    await hub.accounts.delete(account_id)
    return Response(status_code=204)


# --- groups ------------------------------------------------------------------------------


@router.post("/groups/sync", response_model=SyncOut, tags=["groups"])
async def sync_groups(body: SyncRequest, hub: HubDep, _writer: WriterDep) -> Response:
    """Sync now: one account's groups, every account's, or (``directory``) every group
    the providers list. Groups that fail keep their last good members."""
    if body.directory:
        report = await hub.group_sync.sync_directory(body.channel_id)
    else:
        report = await hub.group_sync.sync_accounts(body.account_id)
    return JsonResponse(sync_out(report))


@router.get("/groups/health", response_model=HealthOut, tags=["groups"])
async def groups_health(hub: HubDep, _actor: ActorDep) -> Response:
    """How fresh and complete the member cache is (lists capped at 100 entries)."""
    figures = await hub.groups.health()
    for key in ("most_recent_sync", "oldest_sync"):
        figures[key] = iso(figures[key])
    for entry in (*figures["failed_syncs"], *figures["stale_groups"]):
        entry["last_synced_at"] = iso(entry["last_synced_at"])
    return JsonResponse(figures)


@router.get("/groups/{chat_id}/members", response_model=MembersOut, tags=["groups"])
async def group_members(chat_id: ChatIdPath, hub: HubDep, actor: ActorDep) -> Response:
    """A group's cached members (``chat_id`` with or without ``@g.us``). Linked ids are
    shown with the phone they resolve to, when known. Agents see assigned groups only."""
    chat, members = await hub.groups.members(actor, chat_id)
    return JsonResponse(
        {
            "group": group_out(chat, len(members)),
            "data": [
                {
                    "phone": m["member_phone"] or m["resolved_phone"],
                    "lid": m["member_lid"],
                    "rank": m["rank"],
                    "synced_at": iso(m["synced_at"]),
                }
                for m in members
            ],
        }
    )


# --- lookup ------------------------------------------------------------------------------


@router.post("/lookup", response_model=LookupOut, tags=["groups"])
async def lookup(body: LookupRequest, hub: HubDep, _actor: ActorDep) -> Response:
    """Accounts whose groups have this phone as a member, with the group and the rank.

    The phone may be written in any usual way; it is matched under every form it may be
    stored in (``forms``). 422 when it is not a phone number.
    """
    found = await hub.groups.lookup(body.phone)
    return JsonResponse(
        {
            "phone": found.phone.e164,
            "forms": sorted(found.phone.forms),
            "count": len(found.matches),
            "data": found.matches,
        }
    )
