"""Where a send without ``channel_id`` goes, and re-pointing a channel's base URL, on every
backend (``serve --sandbox`` relies on both: tests/integration/test_serve_sandbox.py)."""

from __future__ import annotations

from typing import Any

from conftest import ContractEnv, phone
from wahub.domain.content import SendRequest
from wahub.store import channels as channel_q


async def send_without_channel(env: ContractEnv) -> dict[str, Any]:
    request = SendRequest.model_validate({"to": phone(1), "text": {"body": "hi"}})
    return (await env.messaging.send(env.admin, request)).message


async def test_the_only_channel_is_the_default(env: ContractEnv) -> None:
    default = await env.messaging.default_channel()

    assert default is not None
    assert default["id"] == env.channel_id
    assert "credentials" not in default
    assert (await send_without_channel(env))["channel_id"] == env.channel_id


async def test_several_channels_have_no_default_until_one_is_chosen(env: ContractEnv) -> None:
    sandbox = await env.add_channel("sandbox")
    before = await env.messaging.default_channel()
    env.messaging.default_channel_id = sandbox

    chosen = await env.messaging.default_channel()

    assert before is None
    assert chosen is not None
    assert chosen["id"] == sandbox
    assert (await send_without_channel(env))["channel_id"] == sandbox


async def test_a_default_that_no_longer_exists_falls_back_to_the_rule(env: ContractEnv) -> None:
    env.messaging.default_channel_id = "ch_gone"

    default = await env.messaging.default_channel()

    assert default is not None
    assert default["id"] == env.channel_id


async def test_set_base_url_repoints_a_channel(env: ContractEnv) -> None:
    await env.channels.set_base_url(env.channel_id, "http://127.0.0.1:4242/")

    async with env.db.read() as conn:
        stored = await channel_q.get_channel(conn, env.channel_id)
    assert stored is not None
    assert stored["base_url"] == "http://127.0.0.1:4242"
