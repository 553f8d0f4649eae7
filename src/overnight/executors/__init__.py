"""Executors: where measurements run. ``EXECUTORS`` is the registry by name."""

from __future__ import annotations

from collections.abc import Callable

from overnight.errors import ConfigError
from overnight.executors._base import Executor
from overnight.executors.local import LocalExecutor

EXECUTORS: dict[str, Callable[[], Executor]] = {
    "local": LocalExecutor,
}


def make_executor(name: str) -> Executor:
    try:
        return EXECUTORS[name]()
    except KeyError:
        raise ConfigError(f"unknown executor {name!r}; valid executors are: {', '.join(sorted(EXECUTORS))}") from None


__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "make_executor"]
