"""How much of the machine other programs use: the contention a measurement records.

The contract: the machine's busy CPU time from /proc/stat, less what overnight itself used
(the controller and the children it reaped), as a share of the machine's capacity, 0 to 1;
None where /proc/stat cannot be read or the window is too short to say anything.
overnight.process.run_command records it for every command (``RunResult.contention``);
:func:`others_share` asks between runs (overnight.judge.measure).
"""

from __future__ import annotations

import os
import time

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # /proc/stat's unit
MIN_CONTENTION_S = 0.5  # shorter runs record no contention (see contention)


def machine_busy() -> float | None:
    """CPU seconds the whole machine has been busy since boot, steal included (None where /proc/stat is not)."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 8:
        return None
    # user nice system idle iowait irq softirq [steal ...]: busy is all but idle and iowait
    ticks = [int(v) for v in fields[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / _CLOCK_TICKS


def others_share(window_s: float = 1.0) -> float | None:
    """The share of the machine other programs use now, over ``window_s`` (None where /proc/stat is not).

    Called between runs: this process's own CPU time in the window is left out.
    """
    before, mine = machine_busy(), os.times()
    time.sleep(window_s)
    after, now = machine_busy(), os.times()
    return contention(before, after, own_cpu(mine, now), window_s)


def own_cpu(before: os.times_result, after: os.times_result) -> float:
    """CPU seconds overnight used between two readings: this process, and the children it reaped meanwhile
    (the command itself, and the git processes writing commits beside it)."""
    return float(
        (after.user - before.user)
        + (after.system - before.system)
        + (after.children_user - before.children_user)
        + (after.children_system - before.children_system)
    )


def contention(before: float | None, after: float | None, own: float, wall: float) -> float | None:
    """The share of the machine other programs used while the command ran (0 to 1; None when unknown).

    What the whole machine was busy minus what overnight used (the command included), over
    the machine's capacity in that time: another job on the other core of two reads about
    0.5. A run taken while it jumps is one a burst of load may have slowed (see
    overnight.judge.measure). Runs under MIN_CONTENTION_S say nothing: a burst lasts tens of seconds,
    and over a short window the machine's own bookkeeping is all there is to see.
    """
    if before is None or after is None or wall < MIN_CONTENTION_S:
        return None
    capacity = wall * (os.cpu_count() or 1)
    return round(min(1.0, max(0.0, (after - before - own) / capacity)), 3)
