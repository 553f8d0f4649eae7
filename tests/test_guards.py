"""Guards: conditions on secondary metrics that a kept change must also meet ([metric] guards)."""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import AGENT, Repo, Result, ledger_rows
from overnight.config import parse_config
from overnight.errors import ConfigError
from overnight.judge import guards
from overnight.records import DISTURBED, Experiment, Measured, Status

# score = (X - 3)^2 + 1 (lower is better), and two secondary metrics the agent can move.
TRAIN = """\
X = 10
MEM = 100
PARAMS = 5
PRINT_MEM = 1
print("---")
print(f"score: {(X - 3) ** 2 + 1}")
if PRINT_MEM:
    print(f"mem: {MEM}")
print(f"params: {PARAMS}")
"""

CONFIG = """\
[task]
run = "{python} train.py"
editable = ["train.py"]
budget_s = 5
timeout_s = 60

[metric]
name = "score"
goal = "min"
guards = {guards}
"""

GUARDS = ["mem <= 1.05 * best", "params <= 10", "duration_s <= 600"]


def guarded_task(repo: Repo, guards_list: list[str]) -> Repo:
    repo.write("train.py", TRAIN)
    repo.write("overnight.toml", CONFIG.format(python=sys.executable, guards=json.dumps(guards_list)))
    repo.write("program.md", "Make score small.\n")
    repo.commit("task")
    return repo


def config_with(*texts: str) -> dict[str, object]:
    return {
        "task": {"run": "python train.py", "editable": ["train.py"]},
        "metric": {"name": "score", "guards": list(texts)},
    }


# -- the grammar -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "written", "relative", "scale", "offset"),
    [
        ("num_params_M <= 10", "num_params_M <= 10", False, 0.0, 10.0),
        ("  loss>-0.5 ", "loss > -0.5", False, 0.0, -0.5),
        ("duration_s < best", "duration_s < best", True, 1.0, 0.0),
        ("peak_memory_mb <= 1.05 * best", "peak_memory_mb <= 1.05 * best", True, 1.05, 0.0),
        ("peak_memory_mb <= best*1.1", "peak_memory_mb <= 1.1 * best", True, 1.1, 0.0),
        ("peak_memory_mb <= best + 50", "peak_memory_mb <= best + 50", True, 1.0, 50.0),
        ("accuracy >= best - 1e-2", "accuracy >= best - 0.01", True, 1.0, -0.01),
        ("eval/acc.top-1 >= 0.9", "eval/acc.top-1 >= 0.9", False, 0.0, 0.9),
    ],
)
def test_each_form_of_a_guard_parses(text: str, written: str, relative: bool, scale: float, offset: float) -> None:
    guard = guards.parse(text)
    assert guard.text == written
    assert (guard.relative, guard.scale, guard.offset) == (relative, scale, offset)
    assert guards.parse(guard.text) == guard  # the written form reads back as the same guard


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("mem == 100", "== is not a comparison a guard makes"),
        ("mem <= ", "nothing after <="),
        ("mem", "expected a metric name, a comparison and a bound"),
        ("<= 10", "expected a metric name, a comparison and a bound"),
        ("mem <= 2 * best + 1", "cannot read the bound '2 * best + 1'"),
        ("mem <= 0 * best", "the factor of best must be positive, got 0"),
        ("mem <= -1 * best", "the factor of best must be positive, got -1"),
        ("mem <= __import__('os')", "cannot read the bound"),
        ("mem <= 1e999", "its numbers must be finite"),
        ("mem <= worst", "cannot read the bound 'worst'"),
    ],
)
def test_a_malformed_guard_is_named_with_the_forms_accepted(text: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_with("mem <= best", text), "overnight.toml")
    message = str(caught.value)
    assert message.startswith(f"overnight.toml [metric] guards: {text!r}: {why}")
    assert "NAME OP K * best" in message and "OP is <=, <, >= or >" in message


def test_a_guard_on_the_metric_itself_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"guards the metric being optimized.*min_delta"):
        parse_config(config_with("score <= 10"))


def test_guards_are_a_list_of_strings() -> None:
    data = config_with()
    data["metric"] = {"name": "score", "guards": [1]}
    with pytest.raises(ConfigError, match=r"\[metric\] guards: expected a list of strings"):
        parse_config(data)
    assert parse_config(config_with()).metric.guards == ()


def test_a_config_without_guards_keeps_the_fingerprint_of_runs_made_before_guards() -> None:
    assert '"guards"' not in parse_config(config_with()).fingerprint()
    assert '"guards": ["mem <= best"]' in parse_config(config_with("mem <= best")).fingerprint()


# -- judging a change against them ------------------------------------------------------------------


def test_broken_names_the_guard_the_values_and_the_limit() -> None:
    rules = guards.parse_all(["mem <= 1.05 * best", "params <= 10", "acc >= best - 0.5", "t < best"])
    best = {"mem": 760.0, "params": 3.0, "acc": 90.0, "t": 10.0}
    assert guards.broken(rules, {"mem": 798.0, "params": 10.0, "acc": 89.5, "t": 9.0}, best) == []
    assert guards.broken(rules, {"mem": 812.0, "params": 12.5, "acc": 89.0, "t": 10.0}, best) == [
        "breaks guard mem <= 1.05 * best: 812 > 1.05 × 760 = 798",
        "breaks guard params <= 10: 12.5 > 10",
        "breaks guard acc >= best - 0.5: 89 < 90 - 0.5 = 89.5",
        "breaks guard t < best: 10 >= 10",
    ]


def test_a_metric_not_reported_breaks_its_guard() -> None:
    rules = guards.parse_all(["mem <= 1.05 * best", "params <= 10"])
    assert guards.broken(rules, {"params": 1.0}, {"mem": 1.0}) == [
        "breaks guard mem <= 1.05 * best: its runs reported no mem"
    ]
    assert guards.broken(rules, {"mem": 1.0, "params": 1.0}, {}) == [
        "breaks guard mem <= 1.05 * best: the best reported no mem to compare with"
    ]


def test_means_are_over_the_runs_that_count_and_the_harness_fills_in_what_the_output_does_not_print() -> None:
    def run(seed: int, value: float | None, kind: str = "candidate", **metrics: float) -> Measured:
        return Measured(1, seed, value, kind, metrics=metrics, duration_s=10.0 + seed, peak_memory_mb=500.0)

    runs = [
        run(0, 1.0, mem=100.0),
        run(1, 1.0, mem=110.0, peak_memory_mb=42.0),  # printed: wins over the harness's measurement
        run(2, 9.0, DISTURBED, mem=1000.0),  # set aside: left out, as from the judge's estimate
        run(3, None, mem=1000.0),  # failed: no measurement at all
    ]
    found = guards.means(runs, ["mem", "peak_memory_mb", "duration_s", "absent"])
    assert found == {"mem": 105.0, "peak_memory_mb": (500.0 + 42.0) / 2, "duration_s": 10.5}


def test_describe_gives_one_line_per_guard_for_the_brief() -> None:
    config = parse_config(config_with("mem <= 1.05 * best", "params <= 10", "acc >= best - 0.5"))
    assert guards.describe(config.metric.guards) == [
        "mem must stay at most 1.05 × the best's mem",
        "params must stay at most 10",
        "acc must stay at least the best's acc - 0.5",
    ]
    assert guards.describe(config.metric.guards, {"mem": 760.0, "acc": 90.0})[::2] == [
        "mem must stay at most 1.05 × the best's mem (the best's is 760: at most 798)",
        "acc must stay at least the best's acc - 0.5 (the best's is 90: at least 89.5)",
    ]
    best = Experiment(3, Status.KEEP, metrics={"mem": 200.0}, peak_memory_mb=900.0)
    assert (
        guards.describe(config.metric.guards, best)[0]
        == "mem must stay at most 1.05 × the best's mem (the best's is 200: at most 210)"
    )
    assert guards.describe(parse_config(config_with()).metric.guards) == []


# -- a real run ---------------------------------------------------------------------------------------


def test_a_change_that_breaks_a_guard_is_discarded_with_the_guard_named(
    repo: Repo, plan: Callable[..., Path], cli: Callable[..., Result]
) -> None:
    task = guarded_task(repo, GUARDS)
    plan(
        {
            "1": [["set", "train.py", "X", "8"]],  # better, memory unchanged: kept
            "2": [["set", "train.py", "X", "6"], ["set", "train.py", "MEM", "200"]],  # better, twice the memory
            "3": [["set", "train.py", "X", "6"], ["set", "train.py", "MEM", "104"]],  # better, within 5%: kept
            # within 5% of the best (104), not of the baseline (100): kept
            "4": [["set", "train.py", "X", "5"], ["set", "train.py", "MEM", "109"]],
            "5": [["set", "train.py", "X", "4"], ["set", "train.py", "PARAMS", "12"]],  # past the absolute limit
            "6": [["set", "train.py", "X", "4"], ["set", "train.py", "PRINT_MEM", "0"]],  # mem no longer printed
        }
    )
    result = cli("run", task.path, "--tag", "g", "--agent-command", AGENT, "--max-experiments", "6")
    assert result.code == 0, result.err
    rows = ledger_rows(task.path, "g")
    assert [(r["status"], r["metric"]) for r in rows] == [
        ("baseline", 50),
        ("keep", 26),
        ("discard", 10),
        ("keep", 10),
        ("keep", 5),
        ("discard", 2),
        ("discard", 2),
    ]
    assert rows[2]["reason"].startswith(
        "breaks guard mem <= 1.05 * best: 200 > 1.05 × 100 = 105 (on the metric: better"
    )
    assert rows[2]["info"]["broken_guards"] == ["breaks guard mem <= 1.05 * best: 200 > 1.05 × 100 = 105"]
    assert rows[5]["reason"].startswith("breaks guard params <= 10: 12 > 10 (on the metric: better")
    assert rows[6]["reason"].startswith("breaks guard mem <= 1.05 * best: its runs reported no mem")
    # Guards cost no runs: judged on the runs the judge took (the first and its confirmation), as a keep is.
    assert rows[2]["runs"] == rows[3]["runs"] == 2
    assert "X = 5" in task.git("show", "overnight/g:train.py")

    table = cli("log", task.path, "--tag", "g")
    assert table.code == 0 and "[breaks guard params <= 10: 12 > 10]\n" in table.out
    shown = cli("show", "2", task.path, "--tag", "g")
    assert shown.code == 0 and "breaks guard mem <= 1.05 * best: 200 > 1.05 × 100 = 105" in shown.out
    # The guards are part of the run's recorded settings.
    db = sqlite3.connect(task.path / ".overnight" / "g" / "ledger.db")
    config = json.loads(db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()[0])
    db.close()
    assert config["metric"]["guards"] == GUARDS


def test_a_run_whose_baseline_does_not_report_a_guarded_metric_does_not_start(
    repo: Repo, plan: Callable[..., Path], cli: Callable[..., Result]
) -> None:
    task = guarded_task(repo, ["memory <= 1.05 * best", "peak_memory_mb <= 100000"])
    plan({"*": [["set", "train.py", "X", "8"]]})
    result = cli("run", task.path, "--tag", "m", "--agent-command", AGENT, "--max-experiments", "2")
    assert result.code == 3, result.err
    assert "[metric] guards name memory, which the best (experiment 0) did not report" in result.err
    assert "mem, " in result.err and "'memory: <number>' line" in result.err
    assert not task.git("branch", "--list", "overnight/m").strip()  # the run was removed again


def test_a_bad_guard_in_overnight_toml_stops_before_anything_is_created(repo: Repo, cli: Callable[..., Result]) -> None:
    task = guarded_task(repo, ["mem <= 1.05 * best", "params =< 10"])
    before = task.snapshot()
    result = cli("run", task.path, "--tag", "bad", "--agent-command", AGENT, "--max-experiments", "1")
    assert result.code == 2
    assert "[metric] guards: 'params =< 10': expected a metric name, a comparison and a bound" in result.err
    assert "NAME OP best + K" in result.err
    assert not (task.path / ".overnight").exists()
    assert task.snapshot() == before


def test_a_guard_added_to_a_resumed_run_must_name_a_metric_its_best_reports(
    repo: Repo, plan: Callable[..., Path], cli: Callable[..., Result]
) -> None:
    task = guarded_task(repo, [])
    plan({"*": [["set", "train.py", "X", "8"]]})
    assert cli("run", task.path, "--tag", "r", "--agent-command", AGENT, "--max-experiments", "1").code == 0
    task.write("overnight.toml", CONFIG.format(python=sys.executable, guards='["memory <= best"]'))
    task.commit("a guard")
    changed = cli("run", task.path, "--tag", "r", "--agent-command", AGENT, "--max-experiments", "1")
    assert changed.code == 5 and "[metric] guards: [] → ['memory <= best']" in changed.err
    assert "editable" not in changed.err  # only what changed is listed
    forced = cli("run", task.path, "--tag", "r", "--agent-command", AGENT, "--max-experiments", "1", "--force")
    assert forced.code == 3 and "name memory, which the best (experiment 1) did not report" in forced.err
    assert [r["status"] for r in ledger_rows(task.path, "r")] == ["baseline", "keep"]  # the run is kept as it was
