"""A TOML file read, and one of its tables checked against a frozen dataclass: the generic half of overnight.toml.

The schema is not here: it is the dataclasses of ``overnight.config``, one per table. This module knows
only how to hold a table up to a dataclass: a key the dataclass does not have fails and lists the valid
ones, a value of the wrong type names the file, the table, the key and what was expected, and a field
typed as another dataclass is a sub-table (``[agent.tune]``). It imports nothing of overnight but the
errors, so the schema can use it without a circle.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from pathlib import Path
from typing import Any

from overnight.errors import ConfigError


def read_document(path: Path, missing: str) -> dict[str, Any]:
    """The TOML document in ``path``; ``missing`` is what the user should do when there is no such file."""
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: not found; {missing}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot be read: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None


def parse_table(where: str, name: str, raw: Any, cls: type) -> Any:
    """Table ``name`` of the document ``where`` as an instance of ``cls``, checked.

    ``cls`` is a frozen dataclass whose fields are typed ``str``, ``float``, ``int``, ``bool``,
    ``tuple[str, ...]``, ``dict[str, tuple[float, float]]`` or another such dataclass, and whose
    ``check(where)`` method applies the rules across fields and returns the instance to use (it may fill
    in a default that depends on another field). A key the table leaves out keeps the field's default.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} [{name}]: expected a table, got {raw!r}")
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in raw.items():
        if key not in hints:
            raise ConfigError(f"{where} [{name}] {key}: unknown key; valid keys are: {', '.join(valid)}")
        if dataclasses.is_dataclass(hints[key]):
            values[key] = parse_table(where, f"{name}.{key}", value, hints[key])
        else:
            values[key] = parse_value(where, name, key, value, hints[key])
    return cls(**values).check(where)


def parse_value(where: str, section: str, key: str, value: Any, kind: Any) -> Any:
    """Check one value against its field type and return it in the dataclass's form."""
    label = f"{where} [{section}] {key}"
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{label}: expected a string, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{label}: expected a number, got {value!r}")
        if not math.isfinite(value):  # TOML has nan and inf: either would switch a limit off silently
            raise ConfigError(f"{label}: expected a finite number, got {value!r}")
        return float(value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{label}: expected an integer, got {value!r}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{label}: expected true or false, got {value!r}")
        return value
    if typing.get_origin(kind) is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{label}: expected a list of strings, got {value!r}")
        return tuple(value)
    if typing.get_origin(kind) is dict:  # NAME = [low, high]
        if not isinstance(value, dict):
            raise ConfigError(f"{label}: expected a table of NAME = [low, high], got {value!r}")
        ranges = {}
        for name, pair in value.items():
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)
            ):
                raise ConfigError(f"{label}: {name} expected [low, high] numbers, got {pair!r}")
            low, high = float(pair[0]), float(pair[1])
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ConfigError(f"{label}: {name} expected finite numbers with low < high, got {pair!r}")
            ranges[name] = (low, high)
        return ranges
    raise TypeError(f"unsupported config field type {kind!r}")  # a bug in the schema, not user input
