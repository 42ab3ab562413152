"""Chat names: one chat's name, the directory refresh, and seed 002's ``GET /refresh-cache``.

``GET /v1/chats/refresh`` and ``GET /refresh-cache`` answer the seed's shape
``{"status": "success", "total_chats", "newly_cached", "already_cached"}``: every chat the
providers listed, split by whether it had a name cached before. Both need an admin key
(they make provider calls and write the cache). A provider that keeps failing is a 502
with the usual error shape; the pages stored before it failed are kept.

The chat-name counters are exported at ``/metrics`` by ``ChatNameCollector``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel
from starlette.responses import Response

from wahub.api.auth import ActorDep, AdminDep, HubDep
from wahub.api.errors import error_response
from wahub.api.params import ID_MAX_LENGTH, ChatIdPath
from wahub.api.responses import JsonResponse
from wahub.domain.actors import Role
from wahub.domain.errors import NotFound
from wahub.domain.phones import canonical_chat_id, is_group_chat
from wahub.features.chat_names import RefreshFailed
from wahub.runtime import Hub

router = APIRouter(tags=["chats"])


class RefreshOut(BaseModel):
    status: str
    total_chats: int
    newly_cached: int
    already_cached: int


class ChatNameOut(BaseModel):
    chat_id: str
    name: str | None
    name_source: str | None
    name_updated_at: float | None


ChannelQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=ID_MAX_LENGTH,
        description="Refresh only this channel (default: every channel with a directory).",
    ),
]


async def _refresh(hub: Hub, channel_id: str | None) -> Response:
    try:
        result = await hub.chat_names.refresh(channel_id)
    except RefreshFailed as exc:
        return error_response(502, exc.code, exc.message, exc.details)
    return JsonResponse(result.as_seed())


@router.get(
    "/v1/chats/refresh",
    response_model=RefreshOut,
    summary="Fetch every chat name from the providers",
    responses={502: {"description": "A provider kept failing"}},
)
async def refresh_chats(hub: HubDep, _admin: AdminDep, channel_id: ChannelQuery = None) -> Response:
    return await _refresh(hub, channel_id)


@router.get(
    "/refresh-cache",
    response_model=RefreshOut,
    tags=["compat"],
    summary="Fetch every chat name (seed-compatible)",
    responses={502: {"description": "A provider kept failing"}},
)
async def refresh_cache(hub: HubDep, _admin: AdminDep) -> Response:
    return await _refresh(hub, None)


@router.get(
    "/v1/chats/{chat_id}/name",
    response_model=ChatNameOut,
    summary="A chat's name (asks the provider once on a miss)",
)
async def chat_name(
    chat_id: ChatIdPath,
    hub: HubDep,
    actor: ActorDep,
) -> Response:
    """``name`` is null when no source knows it (or the provider is failing right now).
    Agents see names of people and of the groups assigned to them (404 otherwise)."""
    canonical = canonical_chat_id(
        chat_id, default_region=hub.settings.default_region, field="chat_id"
    )
    if actor.role == Role.AGENT and is_group_chat(canonical):
        visible = await hub.access.visible_chat_ids(actor)
        if visible is not None and canonical not in visible:
            raise NotFound(f"no chat {canonical}")
    entry = await hub.chat_names.entry(canonical)
    return JsonResponse(
        {
            "chat_id": canonical,
            "name": None if entry is None else entry["name"],
            "name_source": None if entry is None else entry["name_source"],
            "name_updated_at": None if entry is None else entry["name_updated_at"],
        }
    )


class ChatNameCollector(Collector):
    """Reads the running hub's chat-name counters at scrape time (per process)."""

    def __init__(self, hub: Callable[[], Hub | None]) -> None:
        self._hub = hub

    def collect(self) -> Iterator[Any]:
        hub = self._hub()
        if hub is None:
            return
        stats = hub.chat_names.stats
        for name, doc, value in (
            ("wahub_chat_name_cache_hits", "Chat names answered from the cache.", stats.hits),
            ("wahub_chat_name_cache_misses", "Chat-name lookups the cache missed.", stats.misses),
            (
                "wahub_chat_name_negative_hits",
                "Misses answered without asking the provider (a recent failure is cached).",
                stats.negative_hits,
            ),
            (
                "wahub_chat_name_provider_calls",
                "Chat-directory calls to providers (lookups and refresh pages).",
                stats.provider_calls,
            ),
            (
                "wahub_chat_name_provider_failures",
                "Chat-directory calls that failed (errors, not unknown chats).",
                stats.provider_failures,
            ),
        ):
            family = CounterMetricFamily(name, doc)
            family.add_metric([], value)
            yield family
