"""Read the metric of a run: summary lines, a regex, a JSON file, or an evaluator's output.

Summary lines are the autoresearch form, one ``name: number`` per line::

    ---
    val_bpb:          0.997900
    training_seconds: 300.1

Every such line becomes a secondary metric (the last value of each name wins).
A value that is missing, unparsable, NaN or infinite is no metric at all: the
reading says why, and the judge never sees a made-up number.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from overnight import untrusted
from overnight.config import MetricSection

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf(?:inity)?)"
_SUMMARY = re.compile(rf"^[ \t]*([A-Za-z_][\w.\-/]*)[ \t]*:[ \t]*({_NUMBER})[ \t]*\r?$", re.MULTILINE | re.IGNORECASE)


@dataclass(frozen=True)
class Reading:
    """The metric value (None when unusable), every number seen, and why it is unusable."""

    value: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    flags: tuple[str, ...] = ()


def summary_values(text: str) -> dict[str, float]:
    """Every ``name: number`` line of ``text``; the last value of a repeated name wins."""
    return {m.group(1): float(m.group(2)) for m in _SUMMARY.finditer(text)}


def _summary_line(name: str) -> re.Pattern[str]:
    return re.compile(rf"^[ \t]*{re.escape(name)}[ \t]*:[ \t]*({_NUMBER})[ \t]*\r?$", re.MULTILINE | re.IGNORECASE)


def _last_summary(text: str, name: str) -> str | None:
    found = _summary_line(name).findall(text)
    return found[-1] if found else None


def _number(raw: str) -> bool:
    try:
        float(raw)
    except ValueError:
        return False
    return True


def _finite(name: str, raw: str | float, metrics: dict[str, float], where: str) -> Reading:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return Reading(None, metrics, f"{name} in {where} is not a number: {str(raw)[:60]!r}")
    if not math.isfinite(value):
        return Reading(None, metrics, f"{name} in {where} is {value}")
    return Reading(value, metrics)


def read(config: MetricSection, output: str, task_dir: Path, evaluator_output: str | None = None) -> Reading:
    """Read the metric named by ``config`` from a finished run.

    ``output`` is what the run printed; ``evaluator_output`` what ``[metric] command``
    printed, when configured, and then the metric comes from it alone.
    """
    source, where = (
        (evaluator_output, "the evaluator's output") if evaluator_output is not None else (output, "the output")
    )
    metrics = summary_values(output)
    if evaluator_output is not None:
        metrics.update(summary_values(evaluator_output))
    metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
    name = config.name

    if config.file:
        return _read_file(name, task_dir / config.file, config.file, metrics)
    if config.pattern:
        found = re.compile(config.pattern, re.MULTILINE).findall(source)
        if not found:
            return Reading(None, metrics, f"pattern {config.pattern!r} did not match {where}")
        return _finite(name, found[-1], metrics, where)
    # Only the last summary block counts (what follows the last `---` line, when there is one);
    # a metric printed more than once is flagged for whoever reviews the run.
    text, marker = "\n" + source, "\n---\n"
    block = text[text.rindex(marker) + len(marker) :] if marker in text else source
    count = len(_summary_line(name).findall(source))
    flags = (f"{name} was printed {count} times; the value of the last summary block counts",) if count > 1 else ()
    raw = _last_summary(block, name)
    repeated = _summary_line(name).findall(block) if block is not source else []
    if len({float(v) for v in repeated if _number(v)}) > 1:  # e.g. an atexit hook printing after the summary
        shown = ", ".join(repeated[:5])
        reason = (
            f"{name} was printed {len(repeated)} times with different values ({shown}) in the last summary block "
            f"(after the last ---) of {where}: which is the run's own is not known; print it once"
        )
        return Reading(None, metrics, reason, flags)
    if raw is None:
        part = f"the last summary block (after the last ---) of {where}" if block is not source else where
        return Reading(None, metrics, f"no '{name}: <number>' line in {part}", flags)
    reading = _finite(name, raw, metrics, where)
    if reading.value is not None:
        metrics[name] = reading.value
    return Reading(reading.value, reading.metrics, reading.reason, flags)


def _read_file(name: str, path: Path, shown: str, metrics: dict[str, float]) -> Reading:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Reading(None, metrics, f"the run did not write the metric file {shown}")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Reading(None, metrics, f"metric file {shown} is not valid JSON: {exc}")
    if not isinstance(data, dict):
        return Reading(None, metrics, f"metric file {shown} must hold a JSON object")
    for key, value in data.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            metrics[key if key == name else untrusted.name(key)] = float(value)  # one short printable line
    if name not in data:
        return Reading(None, metrics, f"metric file {shown} has no key {name!r}")
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return Reading(None, metrics, f"{name} in {shown} is not a number: {value!r}")
    return _finite(name, value, metrics, shown)
