"""Looking at a run: status, log in three formats, show; and `overnight init`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from conftest import AGENT, Repo
from overnight import git, views
from overnight.records import Experiment, Status, Usage
from overnight.run.paths import paths_for
from overnight.views import commands, text

JSON_KEYS = {
    "id",
    "status",
    "metric",
    "metrics",
    "hypothesis",
    "commit",
    "parent",
    "agent",
    "reason",
    "duration_s",
    "peak_memory_mb",
    "started_at",
}


@pytest.fixture
def finished(task: Repo, plan, cli) -> Repo:
    plan(
        {
            "1": [["set", "train.py", "X", "5"], ["print", "Hypothesis: closer to three"]],
            "2": [["set", "train.py", "X", "9"], ["print", "Hypothesis: too far\tout"]],
            "3": [["write", "helper.py", "VALUE = 9\n"], ["print", "Hypothesis: cheat"]],
        }
    )
    assert cli("run", task.path, "--tag", "v", "--agent-command", AGENT, "--max-experiments", "3").code == 0
    return task


def test_status(finished: Repo, cli) -> None:
    out = cli("status", finished.path).out
    assert "run v  (finished: reached --max-experiments 3)" in out
    assert "experiments: 3 after the baseline, 1 kept;" in out
    assert "baseline:    50" in out
    assert "best:        5 (mean of 2 runs)  (experiment 1; -45, -90.00% vs baseline)  closer to three" in out
    assert f"resume:      overnight run {finished.path} --tag v" in out


def test_log_formats(finished: Repo, cli) -> None:
    table = cli("log", finished.path).out.splitlines()
    assert table[0].split()[:3] == ["id", "status", "score"]
    assert table[2].split()[:4] == ["1", "keep", "5", "-45"]
    tsv = cli("log", finished.path, "--format", "tsv").out.splitlines()
    assert tsv[0] == "commit\tscore\tmemory_gb\tstatus\tdescription"
    fields = tsv[2].split("\t")
    assert len(fields[0]) == 7 and fields[1] == "5.000000" and fields[3] == "keep" and fields[4] == "closer to three"
    assert tsv[3].split("\t")[4] == "too far out"
    assert tsv[4].split("\t")[1] == "" and tsv[4].split("\t")[3] == "rejected"
    rows = json.loads(cli("log", finished.path, "--format", "json").out)
    assert all(set(r) >= JSON_KEYS for r in rows)
    assert rows[1]["commit"] == finished.git("rev-parse", "overnight/v").strip()
    assert rows[1]["agent"] == "command" and rows[0]["agent"] == ""
    assert rows[1]["host"]["cpu"]


def test_show(finished: Repo, cli) -> None:
    out = cli("show", "1", finished.path).out
    assert "experiment 1: keep" in out and "hypothesis:  closer to three" in out
    assert "-X = 10\n+X = 5" in out
    assert "score: 5" in out  # the log's tail
    assert "score:       5 (mean of 2 runs)" in out  # one estimate, saying what it is
    assert "compared:    with 50, experiment 0, the best it was proposed on: -45, -90.00%" in out
    assert "gain:        45 [45, 45] over the best it replaced" in out
    discarded = cli("show", "2", finished.path).out  # judged against the best's estimate as it was then
    assert "compared:    with 5, experiment 1 as judged against (mean of 2 runs): +32, +640.00%" in discarded
    rejected = cli("show", "3", finished.path).out
    assert "changed files that are not editable: helper.py" in rejected
    assert "+VALUE = 9" in rejected  # the rejected change is kept as a diff file
    missing = cli("show", "9", finished.path)
    assert missing.code == 2 and "has no experiment 9" in missing.err


def _gone(view: views.RunView, experiment_id: int) -> views.RunView:
    """``view`` with the commit of ``experiment_id`` replaced by one the repository does not have."""
    exps = [dataclasses.replace(e, commit="0" * 40) if e.id == experiment_id else e for e in view.experiments]
    return dataclasses.replace(view, experiments=exps)


def test_show_without_the_commit_falls_back_to_the_saved_diff(finished: Repo) -> None:
    view = _gone(views.load_view(finished.path, "v"), 1)
    bare = commands.show_text(view, 1)  # no GitError: the diff is missing, and show says why
    assert "--- no diff of the commit: " in bare and "-X = 10" not in bare
    missing = views.experiment_diff(view, view.get(1))
    assert (missing.text, missing.source) == ("", "") and missing.error
    view.paths.diff(1).write_text("-X = 10\n+X = 5\n")
    saved = views.experiment_diff(view, view.get(1))
    assert (saved.text, saved.source) == ("-X = 10\n+X = 5\n", "saved") and saved.error == missing.error
    assert "--- diff (saved) " in commands.show_text(view, 1) and "+X = 5" in commands.show_text(view, 1)


def test_the_diff_of_two_commits_is_asked_of_git_once(finished: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    view = views.load_view(finished.path, "v")
    views.commit_diff.cache_clear()  # the run's briefs (in this process) asked for diffs already
    calls: list[tuple[str, ...]] = []
    real = git.git
    monkeypatch.setattr(git, "git", lambda *args, **kw: calls.append(args) or real(*args, **kw))
    first = views.experiment_diff(view, view.get(1))
    again = views.experiment_diff(views.load_view(finished.path, "v"), view.get(1))
    assert first == again and first.source == "commit" and "+X = 5" in first.text
    assert [c[0] for c in calls] == ["diff"]


def test_show_prints_the_end_of_each_log(finished: Repo) -> None:
    view = views.load_view(finished.path, "v")
    view.paths.log(2).write_text("".join(f"row {i}\n" for i in range(100)))
    out = commands.show_text(view, 2, tail_lines=5)
    assert f"--- {view.paths.log(2)} (last 5 lines) " in out
    assert out.endswith("row 95\nrow 96\nrow 97\nrow 98\nrow 99") and "row 94" not in out


def _view(tmp_path: Path, experiments: list[Experiment], **meta: str) -> views.RunView:
    config = json.dumps({"metric": {"name": "loss", "goal": "min"}})
    return views.RunView("t", tmp_path, paths_for(tmp_path, "t"), {"task": ".", "config": config, **meta},
                         experiments, False, {})  # fmt: skip


def test_usage_counts_and_parent_metrics_of_a_view(tmp_path: Path) -> None:
    exps = [
        Experiment(0, Status.BASELINE, parent="a", commit="a", metric=3.0),
        Experiment(1, Status.DISCARD, parent="a", commit="b", metric=4.0, tokens_in=100, tokens_out=50),
        Experiment(2, Status.KEEP, parent="a", commit="c", metric=2.0, tokens_in=200, cost_usd=0.03),
        Experiment(3, Status.DISCARD, parent="c", commit="d", metric=2.5),
        Experiment(4, Status.CRASH, parent="b"),  # proposed on a discard: no best to compare with
    ]
    view = _view(tmp_path, exps)
    assert view.usage == Usage(300, 50, 0.03)
    assert view.counts == {"baseline": 1, "discard": 2, "keep": 1, "crash": 1}
    assert [view.parent_metric(e) for e in exps] == [3.0, 3.0, 3.0, 2.0, None]
    counted = "experiments: 4 after the baseline, 1 kept; 2 discard, 1 baseline, 1 keep, 1 crash"
    assert counted in commands.status_text(view)
    assert "agents used: 350 tokens, $0.0300" in commands.status_text(view)
    unpriced = _view(tmp_path, [dataclasses.replace(e, cost_usd=None) for e in exps])
    assert unpriced.usage == Usage(300, 50, None) and "agents used: 350 tokens\n" in commands.status_text(unpriced)
    assert "agents used" not in commands.status_text(_view(tmp_path, exps[:1]))


def test_the_agent_settings_each_experiment_was_proposed_with(tmp_path: Path) -> None:
    first, second = {"kind": "command", "command": "a"}, {"kind": "openai", "model": "m"}
    agents = json.dumps([{"from": 0, "settings": first}, {"from": 3, "settings": second}])
    view = _view(tmp_path, [], agents=agents)
    assert [view.agent_settings(i) for i in (0, 2, 3, 9)] == [first, first, second, second]
    assert _view(tmp_path, []).agent_settings(0) is None  # a run from before they were recorded
    later = _view(tmp_path, [], agents=json.dumps([{"from": 2, "settings": second}]))
    assert later.agent_settings(1) is None and later.agent_settings(2) == second


def test_delta_and_short() -> None:
    assert text.delta(5.0, 50.0) == "-45, -90.00%" and text.delta(1.0, 0.0) == "+1" and text.delta(None, 1) == ""
    assert text.change(5.0, 50.0) == (-45.0, -90.0) and text.change(1.0, 0.0) == (1.0, None)
    assert text.short("abcdef", 4) == "abc…" and text.short("a\n  b", 9, one_line=True) == "a b"


def test_most_recent_run_is_the_default(finished: Repo, plan, cli) -> None:
    plan({"*": []})
    assert cli("run", finished.path, "--tag", "w", "--agent-command", AGENT, "--max-experiments", "1").code == 0
    assert "run w " in cli("status", finished.path).out
    assert "run v " in cli("status", finished.path, "--tag", "v").out


def test_init_writes_a_valid_task_and_never_overwrites(repo: Repo, cli, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    result = cli(
        "init",
        repo.path,
        "--run",
        "python train.py",
        "--editable",
        "train.py,model/*.py",
        "--metric",
        "val_bpb",
        "--goal",
        "min",
    )
    assert result.code == 0, result.err
    toml = (repo.path / "overnight.toml").read_text()
    assert 'run = "python train.py"' in toml and 'editable = ["train.py", "model/*.py"]' in toml
    assert "`val_bpb`" in (repo.path / "program.md").read_text()
    (repo.path / "program.md").write_text("mine\n")
    (repo.path / "overnight.toml").unlink()
    again = cli("init", repo.path, "--run", "python other.py", "--editable", "x.py", "--metric", "m")
    assert again.code == 0 and "kept" in again.out
    assert (repo.path / "program.md").read_text() == "mine\n"
    third = cli("init", repo.path, "--run", "a", "--editable", "b", "--metric", "c")
    assert third.code == 2 and "nothing written" in third.err
    assert 'run = "python other.py"' in (repo.path / "overnight.toml").read_text()


def test_init_without_a_terminal_names_the_missing_flags(tmp_path: Path, cli, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    result = cli("init", tmp_path, "--run", "python x.py")
    assert result.code == 2 and "--editable, --metric" in result.err
    assert not (tmp_path / "overnight.toml").exists()


def test_init_asks_on_a_terminal(tmp_path: Path, cli, monkeypatch) -> None:
    answers = iter(["python fit.py", "fit.py", "acc", "max"])
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    assert cli("init", tmp_path).code == 0
    toml = (tmp_path / "overnight.toml").read_text()
    assert 'run = "python fit.py"' in toml and 'name = "acc"' in toml and 'goal = "max"' in toml


def test_an_exploded_value_reads_sensibly() -> None:
    assert text.delta(4.2, 4.0) == "+0.2, +5.00%"
    assert text.delta(1e100, 4.0) == "+1e+100, ×2.5e+99"  # not a percentage of a hundred digits
    assert text.figure(3.04611, 6) == "3.04611 (mean of 6 runs)" and text.figure(3.0, 1) == "3 (1 run)"


def test_a_run_that_is_just_starting_has_no_settings_yet(tmp_path: Path) -> None:
    # The dashboard reads a run the moment its ledger exists, before its settings are written.
    from overnight.views import RunView

    view = RunView(tag="t", root=tmp_path, paths=None, meta={"config": ""}, experiments=[], running=True,  # type: ignore[arg-type]
                   measurements={})  # fmt: skip
    assert view.metric == "metric" and view.goal.value == "min"


def test_log_says_what_its_deltas_are_against_and_marks_discards_that_looked_better(task: Repo, plan, cli) -> None:
    task.write(
        "overnight.toml", task.path.joinpath("overnight.toml").read_text().replace("min_delta = 0.0", "min_delta = 10")
    )
    task.commit("a bar of 10")
    plan(
        {
            "1": [["set", "train.py", "X", "5"], ["print", "Hypothesis: closer to three"]],
            "2": [["set", "train.py", "X", "4"], ["print", "Hypothesis: closer still"]],
            "3": [["set", "train.py", "X", "9"], ["print", "Hypothesis: far"]],
        }
    )
    assert cli("run", task.path, "--tag", "bar", "--agent-command", AGENT, "--max-experiments", "3").code == 0
    table = cli("log", task.path).out.splitlines()
    assert table[0].split()[:7] == ["id", "status", "score", "vs_best", "vs_base", "judged", "runs"]
    keep, close, far = (table[i].split() for i in (2, 3, 4))
    assert keep[:6] == ["1", "keep", "5", "-45", "-45", "better"]
    assert close[:7] == ["2", "discard", "2", "-3", "-48", "below", "bar"]  # better, but not by min_delta 10
    assert far[:6] == ["3", "discard", "37", "+32", "-13", "worse"]
    assert table[3].endswith(
        "closer still  [better than the best by 3 (an exact metric), under the threshold 10]"
    )  # the reason
    assert table[-1].startswith("vs_best: the change from the best each experiment was judged against")
    assert "vs_base: from the baseline, 50 (mean of 2 runs)" in table[-1]
