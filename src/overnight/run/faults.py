"""Fault points: where the fault-injection tests kill the controller.

``OVERNIGHT_FAULT=<point>[:<n>]`` makes the controller kill itself with SIGKILL the n-th
time (default: the first) it reaches ``point``, exactly as an out-of-memory killer or a
power cut would. The points are named where they are placed: ``proposed`` (the agent
has edited, nothing is committed), ``committed`` (between the commit and the run),
``measured`` (the run ended, nothing judged), ``ledger`` (inside a ledger transaction,
before it commits) and ``kept`` (a keep is recorded, the branch has not moved yet).
Without the variable a point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

_seen: Counter[str] = Counter()
_lock = threading.Lock()


def point(name: str) -> None:
    spec = os.environ.get("OVERNIGHT_FAULT")
    if not spec:
        return
    wanted, _, nth = spec.partition(":")
    if wanted != name:
        return
    with _lock:
        _seen[name] += 1
        if _seen[name] == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)
