"""``wahub demo``: the whole product on this machine, no accounts needed.

Starts the hub (SQLite, in-process workers) and the sandbox provider, sends messages over
the public HTTP API to many chats, shows their statuses live, and checks the end state
against the sandbox's own record: every message final, each received exactly once.

Then a campaign to the same people (a CSV with one bad line, two templates), whose
recipients half reply through signed inbound webhooks: the funnel must count each reply
once and equal a full recount.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.live import Live
from rich.table import Table

from wahub.config import Settings
from wahub.demo_web import WebResult, web_act
from wahub.embedded import add_sandbox_channel, embedded_stack, free_port
from wahub.providers.sandbox import Sandbox, SandboxConfig
from wahub.runtime import Hub
from wahub.store import messages as message_q

SHOWN = ("queued", "sending", "uncertain", "sent", "delivered", "read", "failed")


@dataclass
class DemoResult:
    """The outbound act. ``failed_by_code``: failed messages by error code (why they
    failed), ``failure_titles`` the readable reason of each code. ``webhooks_duplicated``
    and ``webhooks_out_of_order``: status webhooks the sandbox delivered twice, or after
    a later status of their message, which the hub absorbed on its way to the right
    final state."""

    messages: int
    accepted: int
    seconds: float
    counts: dict[str, int]
    sandbox_received: int
    duplicates: int
    lost: int
    rejected_by_sandbox: dict[str, int] = field(default_factory=dict)
    failed_by_code: dict[str, int] = field(default_factory=dict)
    failure_titles: dict[str, str] = field(default_factory=dict)
    webhooks_duplicated: int = 0
    webhooks_out_of_order: int = 0
    campaign: CampaignResult | None = None
    web: WebResult | None = None

    @property
    def ok(self) -> bool:
        final = sum(self.counts.get(s, 0) for s in ("delivered", "read", "failed"))
        return (
            self.accepted == self.messages
            and final == self.messages
            and self.duplicates == 0
            and self.lost == 0
            and (self.campaign is None or self.campaign.ok)
            and (self.web is None or self.web.ok)
        )


@dataclass
class CampaignResult:
    """The campaign act: its funnel totals as the API read them, and the checks."""

    recipients: int
    rejected_lines: int
    status: str
    totals: dict[str, int]
    replies_emitted: int
    repliers: int
    replies_stored: int
    differences: int
    replies_duplicated: int = 0

    @property
    def ok(self) -> bool:
        t = self.totals
        return (
            self.status == "completed"
            and t.get("total") == self.recipients
            and t.get("queued") == self.recipients
            and t.get("delivered", 0) + t.get("failed", 0) == self.recipients
            # Every reply stored once, every replier counted once, nothing else counted.
            and self.replies_stored == self.replies_emitted
            and t.get("replied") == self.repliers
            and self.differences == 0
        )


def demo_phone(i: int) -> str:
    return f"+49151234567{i:02d}"


def demo_request(i: int, chat: int) -> dict[str, Any]:
    """A mix of what CRMs send: mostly text, some templates, media and replies."""
    to = demo_phone(chat)
    if i % 10 == 3:
        return {
            "to": to,
            "type": "template",
            "template": {
                "name": "order_update",
                "language": {"code": "en_US"},
                "components": [{"type": "body", "parameters": [{"type": "text", "text": f"#{i}"}]}],
            },
        }
    if i % 10 == 7:
        return {
            "to": to,
            "type": "image",
            "image": {"link": f"https://example.com/img/{i}.jpg", "caption": f"photo {i}"},
        }
    return {"to": to, "type": "text", "text": {"body": f"Hello from wahub, message {i}"}}


def _table(counts: dict[str, int], total: int, elapsed: float, sent_to_api: int) -> Table:
    table = Table(title=f"wahub demo: {total} messages, {elapsed:5.1f} s")
    table.add_column("accepted (202)", justify="right")
    for status in SHOWN:
        table.add_column(status, justify="right")
    table.add_row(str(sent_to_api), *(str(counts.get(s, 0)) for s in SHOWN))
    return table


async def run_demo(
    *,
    messages: int = 2000,
    chats: int = 50,
    rate_per_second: float = 200.0,
    timeout_s: float = 180.0,
    console: Console | None = None,
    data_dir: Path | None = None,
    campaign: bool = True,
    web: bool = True,
) -> DemoResult:
    console = console or Console()
    # The demo's tables are its output: the worker's lease lines (an operator's concern)
    # would land between them. Warnings still show.
    logging.getLogger("wahub.outbox").setLevel(logging.WARNING)
    tmp = tempfile.TemporaryDirectory(prefix="wahub-demo-")
    base = data_dir or Path(tmp.name)
    settings = Settings(
        database_url=f"sqlite:///{base / 'demo.db'}",
        port=free_port(),
        uncertain_grace_seconds=20.0,
        backoff_base_seconds=0.2,
        backoff_max_seconds=5.0,
    )
    # A provider with realistic trouble: some throttling and server errors (retried),
    # a few messages that fail on the recipient's side, duplicated and shuffled webhooks.
    sandbox_config = SandboxConfig(
        latency_ms=5,
        latency_jitter_ms=5,
        rate_throughput_130429=0.01,
        rate_5xx=0.01,
        fail_fraction=0.01,
        duplicate_fraction=0.05,
        shuffle=True,
        seed=7,
    )
    try:
        async with embedded_stack(settings, sandbox_config=sandbox_config) as stack:
            assert stack.sandbox is not None
            assert stack.sandbox_url is not None
            hub = stack.hub
            await add_sandbox_channel(hub, stack.sandbox_url, rate_per_second=rate_per_second)
            key = (await hub.access.create_key(user_name="demo", role="admin")).key
            console.print(
                f"hub on {stack.url} (SQLite {settings.database_url}), "
                f"sandbox provider on {stack.sandbox_url}"
            )
            started = time.monotonic()
            accepted = 0
            refused: Counter[int] = Counter()

            async def post_all() -> None:
                nonlocal accepted
                headers = {"Authorization": f"Bearer {key}"}
                queue: asyncio.Queue[int] = asyncio.Queue()
                for i in range(messages):
                    queue.put_nowait(i)
                async with aiohttp.ClientSession(headers=headers) as http:

                    async def client() -> None:
                        nonlocal accepted
                        while not queue.empty():
                            i = queue.get_nowait()
                            body = demo_request(i, i % chats)
                            async with http.post(
                                f"{stack.url}/v1/messages",
                                json=body,
                                headers={"Idempotency-Key": f"demo-{i}"},
                            ) as resp:
                                if resp.status == 202:
                                    accepted += 1
                                else:
                                    refused[resp.status] += 1
                                    console.print(f"refused: {resp.status} {await resp.text()}")

                    await asyncio.gather(*(client() for _ in range(16)))

            poster = asyncio.create_task(post_all())
            counts: dict[str, int] = {}
            with Live(
                _table(counts, messages, 0, 0), console=console, refresh_per_second=8
            ) as live:
                while True:
                    async with hub.db.read() as conn:
                        counts = await message_q.count_by_status(conn)
                    elapsed = time.monotonic() - started
                    live.update(_table(counts, messages, elapsed, accepted))
                    final = sum(counts.get(s, 0) for s in ("delivered", "read", "failed"))
                    if poster.done() and final >= accepted:
                        break
                    if elapsed > timeout_s:
                        console.print(f"[red]timed out after {timeout_s:g} s[/red]")
                        break
                    await asyncio.sleep(0.2)
            _after_live(console)
            await poster
            seconds = time.monotonic() - started
            await stack.sandbox.wait_webhooks_idle(10)
            result = await collect_result(
                hub, stack.sandbox, messages=messages, accepted=accepted, seconds=seconds
            )
            _print_summary(console, result)
            if campaign:
                result.campaign = await _campaign_act(
                    stack.url, stack.sandbox_url, key, hub, chats, console, timeout_s
                )
                _print_campaign(console, result.campaign)
            if web:
                result.web = await web_act(
                    stack.url, stack.sandbox_url, key, settings, console, timeout_s
                )
    finally:
        tmp.cleanup()
    if result.ok:
        console.print(
            "[green]OK[/green]: every message reached a final state; the sandbox got each "
            "exactly once"
            + ("; the funnel counted every reply once and equals a recount" if campaign else "")
            + ("; a phone linked by QR sent to a group, read." if web else ".")
        )
    else:
        console.print("[red]FAILED[/red]: see the counts above.")
    return result


async def collect_result(
    hub: Hub, sandbox: Sandbox, *, messages: int, accepted: int, seconds: float
) -> DemoResult:
    """The outbound act's end state: the hub's statuses and failure codes against the
    sandbox's record of what it received and how it misbehaved."""
    received = Counter(s.biz_opaque_callback_data for s in sandbox.sends)
    async with hub.db.read() as conn:
        counts = await message_q.count_by_status(conn)
        statuses = await message_q.statuses_by_id(conn)
        failures = await message_q.count_failures_by_code(conn)
    stats = sandbox.stats()
    return DemoResult(
        messages=messages,
        accepted=accepted,
        seconds=seconds,
        counts=counts,
        sandbox_received=len(sandbox.sends),
        duplicates=sum(n - 1 for n in received.values() if n > 1),
        # The demo injects no permanent send errors: every message must have reached
        # the provider, even those that later failed on the recipient's side.
        lost=sum(1 for i in statuses if not received[i]),
        rejected_by_sandbox=stats.get("rejected", {}),
        failed_by_code={code: n for code, (n, _) in failures.items()},
        failure_titles={code: title for code, (_, title) in failures.items() if title},
        webhooks_duplicated=int(stats["webhooks_duplicated"]),
        webhooks_out_of_order=int(stats["webhooks_out_of_order"]),
    )


def summary_rows(r: DemoResult) -> list[tuple[str, str]]:
    """The summary table's rows: what happened, why messages failed, what was survived."""
    rows = [("messages posted", str(r.messages)), ("accepted with 202", str(r.accepted))]
    rows += [(f"final status {s}", str(r.counts[s])) for s in SHOWN if r.counts.get(s)]
    for code, n in sorted(r.failed_by_code.items(), key=lambda item: (-item[1], item[0])):
        title = r.failure_titles.get(code)
        rows.append((f"  failed with {code}" + (f" ({title})" if title else ""), str(n)))
    rows += [
        ("received by the sandbox", str(r.sandbox_received)),
        ("refused by the sandbox, then retried", str(sum(r.rejected_by_sandbox.values()))),
        ("status webhooks delivered twice, applied once", str(r.webhooks_duplicated)),
        ("status webhooks out of order, put back in order", str(r.webhooks_out_of_order)),
        ("duplicates received", str(r.duplicates)),
        ("lost", str(r.lost)),
        ("seconds", f"{r.seconds:.1f}"),
        ("messages/s end to end", f"{r.messages / r.seconds:.0f}" if r.seconds else "-"),
    ]
    return rows


def _after_live(console: Console) -> None:
    # Off a terminal, Live prints its last table without ending the line: what is printed
    # next would start beside the table's bottom border.
    if not console.is_terminal:
        console.line()


FUNNEL = ("total", "queued", "sent", "delivered", "read", "replied", "failed")


def _funnel_table(title: str, stats: dict[str, Any]) -> Table:
    table = Table(title=title)
    table.add_column("template")
    for name in FUNNEL:
        table.add_column(name, justify="right")
    for row in [*stats.get("templates", []), {"template_name": "all", **stats.get("totals", {})}]:
        table.add_row(str(row["template_name"]), *(str(row.get(n, 0)) for n in FUNNEL))
    return table


async def _campaign_act(
    url: str,
    sandbox_url: str,
    key: str,
    hub: Hub,
    people: int,
    console: Console,
    timeout_s: float,
) -> CampaignResult:
    """A campaign over the API to the demo's people, half of whom then reply."""
    lines = ["phone,order", *(f"{demo_phone(i)},A-{1000 + i}" for i in range(people))]
    lines.insert(2, "not a phone,A-0")  # reported by line, the rest kept
    body = {
        "name": "demo: order follow-up",
        "templates": [
            {"name": "order_update", "language": "en_US", "weight": 2, "parameters": ["order"]},
            {"name": "welcome", "language": "en_US", "weight": 1},
        ],
        "csv": "\n".join(lines) + "\n",
    }
    started = time.monotonic()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:

        async def call(method: str, path: str, json: Any = None) -> Any:
            async with http.request(method, f"{url}{path}", json=json) as resp:
                if resp.status >= 300:
                    raise RuntimeError(f"{method} {path}: {resp.status} {await resp.text()}")
                return await resp.json()

        created = await call("POST", "/v1/campaigns", body)
        campaign_id = created["campaign"]["id"]
        for error in created["rejected"]:
            console.print(f"campaign CSV line {error['line']}: {error['code']} (row left out)")
        await call("POST", f"/v1/campaigns/{campaign_id}/start")
        stats: dict[str, Any] = {}

        async def watch(done: Callable[[dict[str, Any]], bool], what: str) -> None:
            nonlocal stats
            with Live(console=console, refresh_per_second=8) as live:
                while True:
                    stats = await call("GET", f"/v1/campaigns/{campaign_id}/stats")
                    elapsed = time.monotonic() - started
                    live.update(_funnel_table(f"campaign funnel, {elapsed:5.1f} s", stats))
                    if done(stats["totals"]) or elapsed > timeout_s:
                        if elapsed > timeout_s:
                            console.print(f"[red]timed out waiting for {what}[/red]")
                        break
                    await asyncio.sleep(0.2)
            _after_live(console)

        recipients = int(created["accepted"])
        await watch(
            lambda t: t["queued"] == recipients and t["delivered"] + t["failed"] == recipients,
            "the campaign's statuses",
        )
        # Half the recipients answer their campaign message (the sandbox's newest sends),
        # as Meta would: signed webhooks, some delivered twice.
        async with http.post(
            f"{sandbox_url}/_sandbox/inbound",
            json={"provider": "cloudapi", "count": max(1, recipients // 2), "kinds": ["reply"]},
        ) as resp:
            emitted = (await resp.json())["emitted"]
        repliers = len({e["sender"] for e in emitted})
        await watch(lambda t: t["replied"] >= repliers, "the replies")
        campaign = await call("GET", f"/v1/campaigns/{campaign_id}")
    deadline = time.monotonic() + 10
    while True:  # a replier is counted with their first reply; wait for the others too
        async with hub.db.read() as conn:
            stored = (await message_q.count_by_status(conn)).get("received", 0)
        if stored >= len(emitted) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    differences = await hub.campaigns.verify(campaign_id)
    async with aiohttp.ClientSession() as http, http.get(f"{sandbox_url}/_sandbox/stats") as resp:
        sandbox_stats = await resp.json()
    return CampaignResult(
        recipients=recipients,
        rejected_lines=len(created["rejected"]),
        status=str(campaign["status"]),
        totals={n: int(stats["totals"].get(n, 0)) for n in FUNNEL},
        replies_emitted=len(emitted),
        repliers=repliers,
        replies_stored=int(stored),
        differences=len(differences),
        replies_duplicated=int(sandbox_stats["inbound_duplicated"]),
    )


def _print_summary(console: Console, r: DemoResult) -> None:
    table = Table(title="summary")
    table.add_column("what")
    table.add_column("value", justify="right")
    for what, value in summary_rows(r):
        table.add_row(what, value)
    console.print(table)


def _print_campaign(console: Console, c: CampaignResult) -> None:
    table = Table(title="campaign")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("state", c.status)
    table.add_row("recipients (CSV lines rejected)", f"{c.recipients} ({c.rejected_lines})")
    table.add_row("replies sent by the sandbox", str(c.replies_emitted))
    table.add_row("replies delivered twice by the sandbox", str(c.replies_duplicated))
    table.add_row("replies stored (each once)", str(c.replies_stored))
    table.add_row("replied in the funnel", str(c.totals.get("replied", 0)))
    table.add_row("funnel counters differing from a recount", str(c.differences))
    console.print(table)
