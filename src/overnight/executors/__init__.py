"""Executors: where measurements run. ``EXECUTORS`` is the registry by name."""

from __future__ import annotations

from collections.abc import Callable

from overnight.errors import ConfigError
from overnight.executors._base import Executor, Job, Measurement
from overnight.executors.local import LocalExecutor
from overnight.task import Task


def _local(task: Task, address: str | None) -> Executor:
    return LocalExecutor()


def _ray(task: Task, address: str | None) -> Executor:
    from overnight.executors.ray import RayExecutor

    return RayExecutor(task, address)


#: name → factory taking the task (its resource requests) and a cluster address
EXECUTORS: dict[str, Callable[[Task, str | None], Executor]] = {"local": _local, "ray": _ray}


def make_executor(name: str, task: Task, address: str | None = None) -> Executor:
    try:
        factory = EXECUTORS[name]
    except KeyError:
        raise ConfigError(f"unknown executor {name!r}; valid executors are: {', '.join(sorted(EXECUTORS))}") from None
    return factory(task, address)


__all__ = ["EXECUTORS", "Executor", "Job", "LocalExecutor", "Measurement", "make_executor"]
