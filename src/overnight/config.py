"""overnight.toml → a frozen, validated configuration.

Each table of the file is a frozen dataclass below; the dataclass *is* the schema.
Validation is generic (overnight.tomltable): a key the dataclass does not have fails and
lists the valid ones, a value of the wrong type names the file, the key and what was
expected. Cross-field rules live in each section's ``check`` method.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overnight.choices import AGENT_KINDS
from overnight.errors import ConfigError
from overnight.judge.guards import parse_all as parse_guards
from overnight.judge.seeds import is_constant_name
from overnight.records import Goal
from overnight.tomltable import parse_table, read_document

CONFIG_FILE = "overnight.toml"
PROGRAM_FILE = "program.md"


def default_timeout(budget_s: float) -> float:
    """The hard kill when [task] timeout_s is not set: twice the budget, and never less than a minute over it,
    for the interpreter, imports and data loading of a short experiment on a busy machine."""
    return max(2 * budget_s, budget_s + 60)


@dataclass(frozen=True)
class TaskSection:
    """[task]: what may change and how an experiment runs."""

    run: str = ""  # the experiment command, run with the task folder as cwd
    editable: tuple[str, ...] = ()  # globs relative to the task folder
    protected: tuple[str, ...] = ()  # extra protected globs; they win over editable
    setup: str = ""  # once per worktree, before its first experiment
    gate: str = ""  # correctness check before each experiment; non-zero → gate_failed
    budget_s: float = 300.0  # handed to the experiment as OVERNIGHT_BUDGET_S
    timeout_s: float = 0.0  # hard kill; 0 means 2 × budget_s, at least budget_s + 60 (start-up on a busy machine)
    exclusive: bool = False  # one experiment at a time, whatever the workers (timing metrics)
    pass_env: tuple[str, ...] = ()  # credentials experiments and command agents may see (see overnight.secrets)
    sandbox: str = ""  # "bwrap": experiments and agent commands under bubblewrap (see overnight.process.sandbox)
    network: bool = False  # with a sandbox: may experiments reach the network?
    memory_mb: float = 0.0  # a run whose process tree holds more is killed (crash); 0: no limit
    max_log_mb: float = 50.0  # a command's log keeps its first and last halves of this much; the middle is cut
    max_diff_mb: float = 10.0  # a proposal whose changed files weigh more is rejected
    num_cpus: float = 1.0  # what one experiment asks of a Ray cluster
    num_gpus: float = 0.0

    def check(self, where: str) -> TaskSection:
        if not self.run.strip():
            raise ConfigError(f'{where} [task] run: required; the experiment command, e.g. run = "python train.py"')
        if not self.editable:
            raise ConfigError(
                f'{where} [task] editable: required; a list of globs the agent may change, e.g. ["train.py"]'
            )
        for key in ("editable", "protected"):
            for pattern in getattr(self, key):
                if not pattern.strip():
                    raise ConfigError(f"{where} [task] {key}: empty glob; remove it")
                if pattern.startswith("/") or ".." in Path(pattern).parts:
                    raise ConfigError(
                        f"{where} [task] {key}: {pattern!r} leaves the task folder; "
                        "globs are relative to the folder holding overnight.toml"
                    )
        _positive(where, "task", "budget_s", self.budget_s)
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ConfigError(f"{where} [task] num_cpus, num_gpus: expected numbers >= 0")
        if self.sandbox not in ("", "bwrap"):
            raise ConfigError(f'{where} [task] sandbox: expected "bwrap" (or nothing), got {self.sandbox!r}')
        for key in ("memory_mb", "max_log_mb", "max_diff_mb"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{where} [task] {key}: expected a number >= 0, got {getattr(self, key)}")
        if self.timeout_s < 0:
            raise ConfigError(f"{where} [task] timeout_s: expected a positive number of seconds, got {self.timeout_s}")
        if self.timeout_s == 0:
            return dataclasses.replace(self, timeout_s=default_timeout(self.budget_s))
        return self


@dataclass(frozen=True)
class MetricSection:
    """[metric]: the number being optimized and where it comes from."""

    name: str = ""
    goal: str = "min"
    pattern: str = ""  # regex with one group, applied to the output
    file: str = ""  # JSON file written by the run, relative to the task folder
    command: str = ""  # protected evaluator run after the experiment; its output is parsed
    holdout: str = ""  # protected command measuring the same metric on held-out data: baseline and keeps only
    # conditions on secondary metrics a kept change must also meet, e.g. "peak_memory_mb <= 1.05 * best"
    # (grammar and semantics: overnight.judge.guards)
    guards: tuple[str, ...] = ()

    def check(self, where: str) -> MetricSection:
        if not self.name.strip():
            raise ConfigError(f'{where} [metric] name: required; the metric to optimize, e.g. name = "val_bpb"')
        if ":" in self.name or "\n" in self.name:
            raise ConfigError(f"{where} [metric] name: {self.name!r} may not contain ':' or a newline")
        if self.goal not in ("min", "max"):
            raise ConfigError(f'{where} [metric] goal: expected "min" or "max", got {self.goal!r}')
        if self.pattern:
            try:
                groups = re.compile(self.pattern, re.MULTILINE).groups
            except re.error as exc:
                raise ConfigError(f"{where} [metric] pattern: not a valid regular expression: {exc}") from None
            if groups != 1:
                raise ConfigError(
                    f"{where} [metric] pattern: expected exactly one capturing group around the number, found {groups}"
                )
        if self.pattern and self.file:
            raise ConfigError(f"{where} [metric]: set either pattern or file, not both")
        if self.file and (self.file.startswith("/") or ".." in Path(self.file).parts):
            raise ConfigError(f"{where} [metric] file: {self.file!r} must be a path inside the task folder")
        for guard in parse_guards(self.guards, f"{where} [metric] guards"):
            if guard.name == self.name:
                raise ConfigError(
                    f"{where} [metric] guards: {guard.text!r} guards the metric being optimized; a guard is a "
                    "constraint on another number of the output (to ask for larger gains, use [judge] min_delta)"
                )
        return self

    @property
    def goal_enum(self) -> Goal:
        return Goal(self.goal)


@dataclass(frozen=True)
class JudgeSection:
    """[judge]: the keep rule (see overnight.judge.rule for the statistics)."""

    min_delta: float = 0.0  # smallest improvement worth keeping, in the metric's units
    rel_delta: float = 0.0  # or: smallest improvement as a fraction of the best (0.005 = 0.5%)
    repeats: int = 1  # measurements of a candidate before any decision
    confirm: bool = True  # a candidate that looks better is measured again before it is kept
    confidence: float = 0.95  # required confidence that the candidate beats the best by the threshold
    # most measurements of one candidate (each look that can keep is tested at α / (max_repeats − 1)); 2: a
    # candidate that passes the screen is measured once more and kept or discarded on that look
    max_repeats: int = 2
    noise_runs: int = 0  # measure the baseline this many times at the start of a run
    # a run during which other programs used this share of the machine more than usual is set aside and
    # taken again (a burst of load; 0: never)
    disturbed_load: float = 0.25
    # before a run, wait up to this long while other programs use disturbed_load more of the machine than usual
    wait_for_quiet_s: float = 120.0
    # the module-level constant the script seeds itself with ("SEED"): set to each run's seed in the measured
    # copy, so that repeated runs are different draws (see overnight.judge.seeds)
    seed: str = ""
    exact: bool = False  # the metric has no noise at all (no randomness, no timing): equal repeats are exact

    def check(self, where: str) -> JudgeSection:
        for key in ("min_delta", "rel_delta"):
            value = getattr(self, key)
            if value < 0 or not math.isfinite(value):
                raise ConfigError(f"{where} [judge] {key}: expected a number >= 0, got {value}")
        if self.min_delta and self.rel_delta:
            raise ConfigError(f"{where} [judge]: set min_delta or rel_delta, not both")
        if not 0.5 <= self.confidence < 1:
            raise ConfigError(f"{where} [judge] confidence: expected a number in [0.5, 1), got {self.confidence}")
        if self.repeats < 1:
            raise ConfigError(f"{where} [judge] repeats: expected 1 or more, got {self.repeats}")
        if self.max_repeats < self.repeats and self.max_repeats == JudgeSection.max_repeats:
            # the default cap is below the repeats asked for: the cap follows them (no decision comes before them)
            return dataclasses.replace(self, max_repeats=self.repeats).check(where)
        if self.max_repeats < self.repeats:
            raise ConfigError(
                f"{where} [judge] max_repeats: expected at least repeats ({self.repeats}), got {self.max_repeats}"
            )
        if self.noise_runs < 0:
            raise ConfigError(f"{where} [judge] noise_runs: expected 0 or more, got {self.noise_runs}")
        if not (0 <= self.wait_for_quiet_s < math.inf):
            raise ConfigError(f"{where} [judge] wait_for_quiet_s: expected seconds >= 0, got {self.wait_for_quiet_s}")
        if not 0 <= self.disturbed_load <= 1:
            raise ConfigError(
                f"{where} [judge] disturbed_load: expected a share from 0 to 1, got {self.disturbed_load}"
            )
        if self.seed and not is_constant_name(self.seed):
            raise ConfigError(
                f"{where} [judge] seed: expected the name of a module-level UPPER_CASE constant of an editable file "
                f'that seeds the script, e.g. seed = "SEED"; got {self.seed!r}'
            )
        if self.seed and self.exact:
            raise ConfigError(f"{where} [judge]: a metric with a seed is not exact; set seed or exact, not both")
        return self


@dataclass(frozen=True)
class TuneSection:
    """[agent.tune]: the offline optimizer's search space (its defaults: overnight.agents.space)."""

    # constants to tune (default: every UPPER_CASE number or bool it finds, less those it leaves
    # alone: names that look like hardware facts or seeds, tuned once named here; zeros, tuned
    # once given a range)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()  # constants never to touch
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # NAME = [low, high]
    seed: int = 0
    startup: int = 5  # random proposals before TPE and the steps near the best take over
    sampler: str = "tpe"  # "tpe", or "random" (a baseline for comparisons)
    vary: int = 2  # constants changed per experiment, at most (the others keep the best's values); 0: all

    def check(self, where: str) -> TuneSection:
        if self.sampler not in ("tpe", "random"):
            raise ConfigError(f'{where} [agent.tune] sampler: expected "tpe" or "random", got {self.sampler!r}')
        for name, (low, high) in self.ranges.items():
            if not low < high:
                raise ConfigError(f"{where} [agent.tune] ranges: {name} needs low < high, got [{low}, {high}]")
        for key in ("startup", "vary"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{where} [agent.tune] {key}: expected 0 or more, got {getattr(self, key)}")
        return self


# The agent kinds, by name (agents.AGENTS builds each; the two lists are pinned equal by a test).


@dataclass(frozen=True)
class AgentSection:
    """[agent]: who proposes changes (the command line overrides these)."""

    kind: str = "tune"
    command: str = ""  # for kind = "command": the shell command that edits the worktree
    timeout_s: float = 1800.0  # how long one proposal may take, all calls and retries together
    model: str = ""  # for LLM and coding-CLI agents
    base_url: str = ""  # for LLM agents: an OpenAI- or Anthropic-compatible server
    # the openai agent's API: "chat" (Chat Completions), "responses", or "auto" (Chat Completions
    # until the model answers that it is only served by the Responses API, as codex models do)
    api: str = "auto"
    retries: int = 2  # times a reply whose edits do not apply is sent back to the model
    max_output_tokens: int = 8192  # the longest reply asked of a model
    context_tokens: int = 30000  # the prompt's budget; older history is left out first
    input_usd_per_mtok: float = 0.0  # prices, when the model's are not known (USD per million tokens)
    output_usd_per_mtok: float = 0.0
    tune: TuneSection = field(default_factory=TuneSection)

    def check(self, where: str) -> AgentSection:
        if self.kind not in AGENT_KINDS:
            raise ConfigError(f"{where} [agent] kind: unknown agent kind {self.kind!r}; valid kinds are: "
                              f"{', '.join(AGENT_KINDS)}")  # fmt: skip
        _positive(where, "agent", "timeout_s", self.timeout_s)
        if self.api not in ("auto", "chat", "responses"):
            raise ConfigError(f'{where} [agent] api: expected "auto", "chat" or "responses", got {self.api!r}')
        for key in ("retries", "max_output_tokens", "context_tokens"):
            if getattr(self, key) < (0 if key == "retries" else 1):
                raise ConfigError(f"{where} [agent] {key}: expected a positive integer, got {getattr(self, key)}")
        for key in ("input_usd_per_mtok", "output_usd_per_mtok"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{where} [agent] {key}: expected a price >= 0, got {getattr(self, key)}")
        return self


@dataclass(frozen=True)
class VerifySection:
    """[verify]: how `overnight verify` measures at a larger scale (the command line adds to these)."""

    run: str = ""  # the experiment command at scale, instead of [task] run (same folder, same metric)

    def check(self, where: str) -> VerifySection:
        return self


@dataclass(frozen=True)
class Config:
    """The whole overnight.toml."""

    task: TaskSection = field(default_factory=TaskSection)
    metric: MetricSection = field(default_factory=MetricSection)
    judge: JudgeSection = field(default_factory=JudgeSection)
    agent: AgentSection = field(default_factory=AgentSection)
    verify: VerifySection = field(default_factory=VerifySection)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """A stable text of the settings that define a run (the agent and [verify] are not among them)."""
        data = self.to_dict()
        del data["agent"]
        if not data["metric"]["guards"]:  # a run started before guards existed keeps its fingerprint
            del data["metric"]["guards"]
        for key in ("seed", "exact"):  # nor before a seed could be named or a metric declared exact
            if not data["judge"][key]:
                del data["judge"][key]
        del data["verify"]
        return json.dumps(data, sort_keys=True)


SECTIONS: dict[str, type] = {f.name: typing.get_type_hints(Config)[f.name] for f in dataclasses.fields(Config)}


def _positive(where: str, section: str, key: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{where} [{section}] {key}: expected a positive number of seconds, got {value}")


def parse_config(data: dict[str, Any], where: str = CONFIG_FILE) -> Config:
    """Validate a parsed TOML document. ``where`` names the source in messages."""
    for name in data:
        if name not in SECTIONS:
            raise ConfigError(f"{where} [{name}]: unknown table; valid tables are: {', '.join(SECTIONS)}")
    for required in ("task", "metric"):
        if required not in data:
            raise ConfigError(f"{where}: missing the [{required}] table; run `overnight init` to write a complete file")
    return Config(**{name: parse_table(where, name, data.get(name, {}), cls) for name, cls in SECTIONS.items()})


def load_config(path: Path) -> Config:
    """Read and validate an overnight.toml file."""
    return parse_config(read_document(path, f"run `overnight init {path.parent}` to create it"), str(path))


def load_program(task_dir: Path) -> str:
    """Read program.md, the human's instructions to the agent."""
    path = task_dir / PROGRAM_FILE
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: not found; write the agent's instructions there (or run `overnight init {task_dir}`)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """'90', '90s', '30m', '8h', '1h30m', '2d' → seconds."""
    compact = text.strip().lower().replace(" ", "")
    pos, total = 0, 0.0
    while pos < len(compact):
        match = _DURATION.match(compact, pos)
        if not match:
            break
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        pos = match.end()
    if not compact or pos != len(compact) or total <= 0:
        raise ConfigError(f"invalid duration {text!r}: use seconds or a form like 90s, 30m, 8h, 1h30m")
    return total
