"""What one experiment becomes in MLflow: its run name, tags, params and metrics, with valid keys.

Pure functions of the ledger row (and the ``[agent]`` settings it was proposed with), kept apart from
the client calls in export_mlflow.py so the mapping can be read and tested on its own.
"""

from __future__ import annotations

import math
import posixpath
import re
from datetime import UTC, datetime
from typing import Any

from overnight.records import Experiment
from overnight.views.text import short

KEY_TAG = "overnight.key"
RUN_ID_TAG = "overnight.run_id"
ROW_TAG = "overnight.row"

HYPOTHESIS_CHARS = 250  # in the tag; the run's description holds up to TEXT_CHARS
TEXT_CHARS = 5000  # MLflow's tag values were capped at 5000 characters before 2.x
PARAM_CHARS = 500  # and param values at 500

_LLM_AGENTS = ("openai", "anthropic")


def run_name(exp: Experiment) -> str:
    return f"{exp.id}: {short(exp.hypothesis, 60, one_line=True) or exp.status.value}"


def tags(exp: Experiment, run_id: str, tag: str) -> dict[str, str]:
    """The ``overnight.*`` tags of ``exp`` (``run_id`` is the overnight run's, ``tag`` its name) and MLflow's own."""
    found = {
        KEY_TAG: f"{run_id}/{exp.id}",
        RUN_ID_TAG: run_id,
        "overnight.tag": tag,
        "overnight.experiment_id": str(exp.id),
        "overnight.status": exp.status.value,
        "overnight.hypothesis": short(exp.hypothesis, HYPOTHESIS_CHARS, one_line=True),
        "overnight.agent": exp.agent,
        "overnight.commit": exp.commit,
        "overnight.parent": exp.parent,
        "overnight.reason": short(exp.reason, TEXT_CHARS),
        "overnight.worker": str(exp.worker),
        "overnight.started_at": exp.started_at,
        "overnight.ended_at": exp.ended_at,
    }
    if exp.exit_code is not None:
        found["overnight.exit_code"] = str(exp.exit_code)
    for key_, value in exp.host.items():
        found[key(f"overnight.host.{key_}")] = short(str(value), TEXT_CHARS)
    if exp.commit:
        found["mlflow.source.git.commit"] = exp.commit
    note = exp.hypothesis + (f"\n\n{exp.status.value}: {exp.reason}" if exp.reason else "")
    found["mlflow.note.content"] = short(note.strip(), TEXT_CHARS)
    return found


def params(exp: Experiment, agent: Any) -> dict[str, str]:
    """Size of the change, the agent's settings (``agent``: the ``[agent]`` table it ran with) and tune's choices."""
    found: dict[str, Any] = {
        "files_changed": exp.files_changed,
        "insertions": exp.insertions,
        "deletions": exp.deletions,
    }
    agent = agent or {}
    configured = isinstance(agent, dict) and exp.agent != "" and agent.get("kind") == exp.agent
    if configured:  # settings of another kind of agent say nothing about this experiment's
        keys: tuple[str, ...] = ("timeout_s",)
        if exp.agent == "command":
            keys += ("command",)
        elif exp.agent in _LLM_AGENTS:
            keys += ("model", "base_url", "retries", "max_output_tokens", "context_tokens")
        elif exp.agent != "tune":  # the coding CLIs
            keys += ("model",)
        found.update({f"agent.{k}": agent[k] for k in keys if agent.get(k) not in (None, "")})
        tune = agent.get("tune") if exp.agent == "tune" else None
        if isinstance(tune, dict):
            found.update({f"agent.tune.{k}": tune[k] for k in ("sampler", "seed", "startup", "vary") if k in tune})
    if exp.info.get("model"):  # what the agent says it used wins over the settings
        found["agent.model"] = exp.info["model"]
    chosen = exp.info.get("params")
    if isinstance(chosen, dict):
        found.update({f"tune.{name}": value for name, value in chosen.items()})
    return {key(k): short(str(v), PARAM_CHARS) for k, v in found.items()}


def metrics(exp: Experiment, metric: str) -> dict[str, float]:
    """The run's metric and secondary metrics by name, overnight's bookkeeping under ``overnight/``; finite only."""
    found: dict[str, float | int | None] = {**exp.metrics, metric: exp.metric}
    ours: dict[str, float | int | None] = {
        "runs": exp.runs or None,
        "duration_s": exp.duration_s,
        "peak_memory_mb": exp.peak_memory_mb,
        "tokens_in": exp.tokens_in,
        "tokens_out": exp.tokens_out,
        "cost_usd": exp.cost_usd,
        "improvement": exp.improvement,
        "ci_low": exp.ci_low,
        "ci_high": exp.ci_high,
        "holdout": exp.holdout,
    }
    found.update({f"overnight/{k}": v for k, v in ours.items()})
    return {
        key(k): float(v)
        for k, v in found.items()
        if v is not None and not isinstance(v, bool) and math.isfinite(float(v))
    }


_BAD_KEY = re.compile(r"[^\w.\- /]")


def key(name: str) -> str:
    """``name`` as a valid MLflow metric, param or tag key (letters, digits, _ - . / and spaces)."""
    found = _BAD_KEY.sub("_", name)[:250]
    norm = posixpath.normpath(found)
    if norm != found or norm == "." or norm.startswith(("..", "/")):  # MLflow refuses keys that look like odd paths
        found = "/".join(p for p in found.split("/") if p not in ("", ".", "..")) or "_"
    return found


def millis(iso: str) -> int | None:
    """An ISO time as MLflow's milliseconds since the epoch (naive times are UTC); None when absent or unreadable."""
    if not iso:
        return None
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def now_millis() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)
