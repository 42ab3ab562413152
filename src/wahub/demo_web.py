"""The demo's WhatsApp Web act: a sandbox phone linked by QR (drawn in the terminal and
scanned by the sandbox's phone), its groups in the directory, and a message to a group
through the session, followed to ``read`` by the session's receipts."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import segno
from rich.console import Console

from wahub.config import Settings
from wahub.sessions.process import SessionProcess
from wahub.store.database import Database

DEMO_PHONE = "+4915100000001"
DEMO_GROUP = "120363000000000777@g.us"
MEMBERS = ("+4915100000002", "+4915100000003")


@dataclass
class WebResult:
    """The act: whether the phone linked by QR, the group's members the directory got
    from the phone, and where the message to the group ended."""

    linked: bool
    group_members: int
    group_message_status: str

    @property
    def ok(self) -> bool:
        return (
            self.linked
            and self.group_members == 1 + len(MEMBERS)
            and (self.group_message_status == "read")
        )


async def web_act(
    hub_url: str, sandbox_url: str, key: str, settings: Settings, console: Console, timeout_s: float
) -> WebResult:
    """Run the act against the hub at ``hub_url`` with a session process of its own."""
    db = Database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    process = SessionProcess(db, settings)
    task = asyncio.create_task(process.run(), name="demo-sessions")
    result = WebResult(linked=False, group_members=0, group_message_status="not sent")
    deadline = time.monotonic() + timeout_s
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:

            async def call(method: str, url: str, json: Any = None) -> Any:
                async with http.request(method, url, json=json) as resp:
                    body = await resp.json()
                    if resp.status >= 300:
                        raise RuntimeError(f"{method} {url}: {resp.status} {body}")
                    return body

            async def until(probe: Any, what: str) -> Any:
                while time.monotonic() < deadline:
                    value = await probe()
                    if value:
                        return value
                    await asyncio.sleep(0.1)
                raise TimeoutError(what)

            channel = await call(
                "POST",
                f"{hub_url}/v1/channels",
                {"name": "demo-phone", "kind": "web", "base_url": sandbox_url},
            )
            session_url = f"{hub_url}/v1/channels/{channel['id']}/session"
            # The phone is in one group with two others (the sandbox plays WhatsApp).
            participants = [{"phone": DEMO_PHONE, "rank": "admin"}] + [
                {"phone": phone, "rank": "member"} for phone in MEMBERS
            ]
            await call(
                "POST",
                f"{sandbox_url}/_sandbox/web/{channel['id']}/groups",
                [{"chat_id": DEMO_GROUP, "name": "Demo artists", "participants": participants}],
            )

            async def qr_shown() -> Any:
                view = await call("GET", session_url)
                return view["state"] == "scan_qr"

            await until(qr_shown, "a QR code")
            qr = await call("GET", f"{session_url}/qr?format=raw")
            drawn = io.StringIO()
            segno.make(qr["code"], error="l").terminal(out=drawn, compact=True)
            console.print("\nWhatsApp Web: link the demo phone by scanning this QR code")
            console.print(drawn.getvalue(), highlight=False, markup=False)
            console.print(f"the sandbox's phone {DEMO_PHONE} scans it...")
            await call(
                "POST",
                f"{sandbox_url}/_sandbox/web/{channel['id']}/scan",
                {"code": qr["code"], "phone": DEMO_PHONE},
            )

            async def working() -> Any:
                view = await call("GET", session_url)
                return view if view["state"] == "working" else None

            view = await until(working, "the session working")
            result.linked = True
            console.print(f"linked: session {view['state']} as {view['me']['phone']}")

            async def group_members() -> Any:
                # 404 until the session listed the phone's groups into the directory.
                async with http.get(f"{hub_url}/v1/groups/{DEMO_GROUP}/members") as resp:
                    return await resp.json() if resp.status == 200 else None

            members = await until(group_members, "the phone's groups in the directory")
            result.group_members = len(members["data"])
            sent = await call(
                "POST",
                f"{hub_url}/v1/messages",
                {
                    "to": DEMO_GROUP,
                    "channel_id": channel["id"],
                    "type": "text",
                    "text": {"body": "hello, group, from wahub"},
                },
            )

            async def read() -> Any:
                message = await call("GET", f"{hub_url}/v1/messages/{sent['id']}")
                result.group_message_status = message["status"]
                return message["status"] in ("read", "failed")

            await until(read, "the group message read")
            console.print(
                f"sent to group {DEMO_GROUP} ({result.group_members} members) through the "
                f"session: {result.group_message_status}"
            )
    except (TimeoutError, RuntimeError) as exc:
        console.print(f"[red]web act: {exc}[/red]")
    finally:
        process.stop()
        with contextlib.suppress(Exception):
            await task
        await db.dispose()
    return result
