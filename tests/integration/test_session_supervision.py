"""``wahub serve`` runs the session process as a child: killed with SIGKILL, it is
restarted (the restart is logged) and resumes the linked phone from its stored
credentials, without a new QR; a serve killed with SIGKILL takes its child along."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from multiprocess import Processes, wait_http
from wahub.config import Settings
from wahub.embedded import free_port
from wahub.providers.sandbox import Sandbox, SandboxConfig
from wahub.runtime import Hub

PHONE = "+4915123450001"
BOUND_S = 120.0
T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    try:
        async with asyncio.timeout(BOUND_S):
            while True:
                value = await probe()
                if value:
                    return value
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


async def admin_key(db_url: str) -> str:
    hub = Hub.build(Settings(_env_file=None, database_url=db_url))
    await hub.start(workers=False, realtime=False)
    try:
        return (await hub.access.create_key(user_name="admin", role="admin")).key
    finally:
        await hub.stop()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_killed_session_process_is_restarted_and_resumes_without_a_qr(
    procs: Processes, db_url: str, tmp_path: Path
) -> None:
    sandbox = Sandbox(SandboxConfig(web_receipt_delay_ms=5))
    sandbox_url = await sandbox.start(port=free_port())
    key = await admin_key(db_url)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAHUB_")}
    env |= {
        "WAHUB_DATABASE_URL": db_url,
        "WAHUB_SECRET_KEY": os.environ["WAHUB_SECRET_KEY"],
        "WAHUB_SESSION_LEASE_SECONDS": "2",
        "WAHUB_SESSION_STATE_DIR": str(tmp_path / "sessions"),
    }
    serve = procs.spawn("serve", ["serve", "--port", str(port)], env)
    hub_url = f"http://127.0.0.1:{port}"
    try:
        await wait_http(f"{hub_url}/healthz")
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:

            async def session(channel_id: str) -> dict[str, Any]:
                async with http.get(f"{hub_url}/v1/channels/{channel_id}/session") as resp:
                    view: dict[str, Any] = await resp.json()
                    assert resp.status == 200, view
                    return view

            async def state_is(channel_id: str, state: str) -> dict[str, Any]:
                async def probe() -> dict[str, Any] | None:
                    view = await session(channel_id)
                    return view if view["state"] == state else None

                return await eventually(probe, f"session {state}")

            async with http.post(
                f"{hub_url}/v1/channels",
                json={"name": "phone", "kind": "web", "base_url": sandbox_url},
            ) as resp:
                channel = await resp.json()
                assert resp.status == 201, channel
            channel_id = channel["id"]
            await state_is(channel_id, "scan_qr")
            async with http.get(
                f"{hub_url}/v1/channels/{channel_id}/session/qr?format=raw"
            ) as resp:
                qr = await resp.json()
            async with http.post(
                f"{sandbox_url}/_sandbox/web/{channel_id}/scan",
                json={"code": qr["code"], "phone": PHONE},
            ) as resp:
                assert resp.status == 200
            linked = await state_is(channel_id, "working")
            first_owner = linked["held_by"]
            child_pid = int(first_owner.split(":")[1])
            assert child_pid != serve.pid
            os.kill(child_pid, signal.SIGKILL)

            async def resumed() -> dict[str, Any] | None:
                view = await session(channel_id)
                taken_over = view["held_by"] not in (None, first_owner)
                # Working again as recorded by the new process (a second "working" in
                # the history), not the dead one's row before the new one wrote to it.
                again = [h["state"] for h in view["history"]].count("working") == 2
                return view if taken_over and again and view["state"] == "working" else None

            view = await eventually(resumed, "a new session process resumed the phone")
            states = [h["state"] for h in view["history"]]
            # Linked once by QR; resumed from the stored credentials.
            assert states.count("scan_qr") == 1, states
            assert view["me"]["phone"] == PHONE
        assert procs.count_in_logs("restarting")["serve"] >= 1
        new_child = int(view["held_by"].split(":")[1])
        serve.kill()
        serve.wait(30)

        async def child_gone() -> bool:
            return not alive(new_child)

        await eventually(child_gone, "the session process stopped with its parent")
    finally:
        await sandbox.stop()
