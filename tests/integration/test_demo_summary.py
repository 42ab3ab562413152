"""The demo's summary (issue 14, point 11): why messages failed, by error code, and how
many duplicated and shuffled status webhooks the hub absorbed, from the function that
builds it over a real hub and sandbox (the full demo runs in test_demo.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from wahub.config import Settings
from wahub.demo import collect_result, demo_phone, summary_rows
from wahub.domain.content import SendRequest
from wahub.embedded import add_sandbox_channel, embedded_stack, free_port
from wahub.providers.sandbox import SandboxConfig
from wahub.runtime import Hub
from wahub.store import messages as message_q

MESSAGES = 20
FINAL = ("delivered", "read", "failed")


async def send_and_settle(hub: Hub, sandbox_url: str) -> dict[str, int]:
    channel = await add_sandbox_channel(hub, sandbox_url)
    actor = await hub.access.authenticate(
        (await hub.access.create_key(user_name="demo", role="admin")).key
    )
    for i in range(MESSAGES):
        request = SendRequest.model_validate(
            {
                "to": demo_phone(i % 5),
                "type": "text",
                "text": {"body": f"m{i}"},
                "channel_id": channel["id"],
            }
        )
        await hub.messaging.send(actor, request)
    deadline = time.monotonic() + 60
    while True:
        async with hub.db.read() as conn:
            counts = await message_q.count_by_status(conn)
        if sum(counts.get(s, 0) for s in FINAL) == MESSAGES:
            return counts
        assert time.monotonic() < deadline, f"messages never all final: {counts}"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("misbehaving", [True, False], ids=["duplicated-shuffled", "orderly"])
async def test_the_summary_says_why_messages_failed_and_what_webhooks_were_survived(
    tmp_path: Path, misbehaving: bool
) -> None:
    settings = Settings(
        _env_file=None, database_url=f"sqlite:///{tmp_path / 'd.db'}", port=free_port()
    )
    config = SandboxConfig(
        fail_fraction=0.5,
        duplicate_fraction=1.0 if misbehaving else 0.0,
        shuffle=misbehaving,
        seed=11,
    )
    async with embedded_stack(settings, sandbox_config=config) as stack:
        assert stack.sandbox is not None
        assert stack.sandbox_url is not None
        counts = await send_and_settle(stack.hub, stack.sandbox_url)
        await stack.sandbox.wait_webhooks_idle(30)
        result = await collect_result(
            stack.hub, stack.sandbox, messages=MESSAGES, accepted=MESSAGES, seconds=1.0
        )
        delivered_webhooks = stack.sandbox.stats()["webhooks_delivered"]

    failed = counts.get("failed", 0)
    assert failed > 0, f"half the messages fail on the recipient's side: {counts}"
    assert result.failed_by_code == {"131026": failed}, result.failed_by_code
    assert result.failure_titles["131026"], "with the provider's readable reason"
    rows = dict(summary_rows(result))
    [failed_row] = [what for what in rows if what.strip().startswith("failed with 131026")]
    assert rows[failed_row] == str(failed)
    assert result.failure_titles["131026"] in failed_row
    if misbehaving:
        assert result.webhooks_duplicated * 2 == delivered_webhooks, "every status came twice"
        assert result.webhooks_out_of_order > 0, "shuffled statuses arrived out of order"
    else:
        assert (result.webhooks_duplicated, result.webhooks_out_of_order) == (0, 0)
    assert rows["status webhooks delivered twice, applied once"] == str(result.webhooks_duplicated)
    assert rows["status webhooks out of order, put back in order"] == str(
        result.webhooks_out_of_order
    )
    assert (result.lost, result.duplicates) == (0, 0)
