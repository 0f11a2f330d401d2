"""`--stats`: one line per monitor at an interval, for long runs: its synced calls per second, what
waits between it and its peers, and its own CPU and memory."""

from __future__ import annotations

import os
import resource
import sys
import time

import trio

PAGE = os.sysconf("SC_PAGE_SIZE")


def _cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE / 1e6
    except (OSError, IndexError, ValueError):
        return 0.0


def _bytes(n: int) -> str:
    return f"{n} B" if n < 1 << 10 else f"{n / (1 << 10):.0f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


async def report(interval: float, role: str, calls, extra) -> None:
    """Every `interval` s until cancelled: `calls()` is the synced calls so far, `extra()` the
    role's own part of the line."""
    last_t, last_cpu, last_calls = time.monotonic(), _cpu(), calls()
    while True:
        await trio.sleep(interval)
        now, cpu, n = time.monotonic(), _cpu(), calls()
        span = max(now - last_t, 1e-9)
        print(f"mvx: stats {role}: {(n - last_calls) / span:.0f} synced calls/s ({n} in all), {extra()}; "
              f"monitor CPU {100 * (cpu - last_cpu) / span:.0f}%, RSS {_rss_mb():.0f} MB", file=sys.stderr, flush=True)
        last_t, last_cpu, last_calls = now, cpu, n


def held(outbox) -> str:
    return f"held for checks {_bytes(outbox.held)}" if outbox is not None else "no write-behind"
