"""A pipeline loop that dies of an unexpected error must not leave a process that looks
alive but no longer sends: the hub raises ``failed``, which ``wahub worker`` and
``wahub serve`` turn into a non-zero exit for their supervisor."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from wahub.config import Settings
from wahub.pipeline.inbox import InboxProcessor
from wahub.runtime import Hub


async def test_a_dead_pipeline_loop_sets_failed_and_stop_still_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken_run(self: InboxProcessor) -> None:
        raise RuntimeError("a bug the loop did not expect")

    # Fault injection: the real loop only dies of bugs, which we cannot schedule.
    monkeypatch.setattr(InboxProcessor, "run", broken_run)
    hub = Hub.build(Settings(database_url=f"sqlite:///{tmp_path / 'h.db'}"))
    await hub.start(workers=True, realtime=False)
    try:
        await asyncio.wait_for(hub.failed.wait(), 10)
    finally:
        await hub.stop()  # must not raise the loop's error again


async def test_a_healthy_hub_is_not_failed(tmp_path: Path) -> None:
    hub = Hub.build(Settings(database_url=f"sqlite:///{tmp_path / 'h.db'}"))
    await hub.start(workers=True, realtime=False)
    try:
        await asyncio.sleep(0.3)
        assert not hub.failed.is_set()
    finally:
        await hub.stop()
    assert not hub.failed.is_set(), "a graceful stop is not a failure"
