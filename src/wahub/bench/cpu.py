"""CPU time of processes, for benchmarks that report cost per message beside speed.

Throughput on a shared, noisy 2-core machine moves with the neighbours; CPU seconds spent
per message move far less, and they are what a sizing guide multiplies.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds process ``pid`` has used so far (Linux ``/proc``).

    Raises ``ProcessLookupError`` once the process is gone: its time cannot be known
    after that, so a benchmark reads it before stopping the process.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None
    # The command name (field 2) is in parentheses and may contain spaces; utime and
    # stime are fields 14 and 15, i.e. the 12th and 13th after the closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def total_cpu_seconds(pids: Iterable[int]) -> float:
    """CPU seconds of all of ``pids`` together."""
    return sum(cpu_seconds(pid) for pid in pids)
