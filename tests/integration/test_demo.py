"""The main job, `wahub demo`, at a small size: it must pass its own end-state check,
outbound messages, the campaign act (CSV with a bad line, replies, exact funnel) and the
WhatsApp Web act (a sandbox phone linked by a QR drawn in the terminal, a group message
read through its session)."""

from __future__ import annotations

from io import StringIO

from rich.console import Console

from wahub.demo import run_demo


async def test_the_demo_reaches_a_checked_final_state() -> None:
    console = Console(file=StringIO(), width=120)
    result = await run_demo(messages=120, chats=12, console=console, timeout_s=90)
    final = sum(result.counts.get(s, 0) for s in ("delivered", "read", "failed"))
    assert result.accepted == 120, "every POST was accepted with 202"
    assert final == 120, f"every message reached a final state: {result.counts}"
    assert result.sandbox_received == 120, "the sandbox received each message"
    assert result.duplicates == 0
    assert result.lost == 0
    campaign = result.campaign
    assert campaign is not None
    assert campaign.status == "completed"
    assert (campaign.recipients, campaign.rejected_lines) == (12, 1), "the bad CSV line"
    assert campaign.totals["queued"] == 12, campaign.totals
    assert campaign.replies_emitted == 6
    assert campaign.replies_stored == 6, "each reply stored once, duplicated webhooks or not"
    assert campaign.totals["replied"] == campaign.repliers == 6, campaign.totals
    assert campaign.differences == 0, "the funnel equals a recount"
    web = result.web
    assert web is not None
    assert web.linked, "the phone linked by QR"
    assert web.group_members == 3, "the phone's group reached the directory"
    assert web.group_message_status == "read"
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert "scanning this QR code" in output
    assert "\u2580" in output or "\u2588" in output, "the QR is drawn"
    assert result.ok
    assert "OK" in console.file.getvalue(), "the summary says so"  # type: ignore[attr-defined]
