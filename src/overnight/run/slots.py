"""Slots: how many experiments run at once, and on which GPU.

A run has K slots (``--slots K``), or one per GPU (``--gpus 0,1,2,3``), or one when the
task is ``exclusive`` (timing metrics that contention would distort). A worker holds a
slot only while its experiment runs, not while its agent thinks, so with more workers
than slots the agents think ahead and a freed slot gets the next proposal at once.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from contextlib import contextmanager


class Slots:
    def __init__(self, count: int = 1, gpus: list[str] | None = None) -> None:
        self.gpus = list(gpus or [])
        self.count = len(self.gpus) if self.gpus else max(1, count)
        self._free: queue.Queue[int] = queue.Queue()
        for index in range(self.count):
            self._free.put(index)

    @classmethod
    def for_task(cls, exclusive: bool, count: int, gpus: list[str] | None = None) -> Slots:
        """``count`` slots (one per GPU when ``gpus`` are given), or one when the task is ``exclusive``."""
        if exclusive:
            return cls(1, (gpus or [])[:1])
        return cls(count, gpus)

    @contextmanager
    def hold(self) -> Iterator[dict[str, str]]:
        """Wait for a free slot; yield the environment it gives the experiment (its GPU)."""
        index = self._free.get()
        try:
            yield {"CUDA_VISIBLE_DEVICES": self.gpus[index]} if self.gpus else {}
        finally:
            self._free.put(index)
