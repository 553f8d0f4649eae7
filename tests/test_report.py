"""The report (plot and Markdown), finalize (a clean branch of the keeps), and the live view."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from conftest import AGENT, Repo, git, tune_task
from overnight.git import Branch
from overnight.records import Experiment, Goal, Status
from overnight.run.ledger import Ledger
from overnight.run.paths import paths_for
from overnight.run.state import Event, RunState
from overnight.views import RunView
from overnight.views.live import SLOW_S, LiveView, line, plain
from overnight.views.report import markdown


@pytest.fixture
def three_keeps(task: Repo, plan, cli) -> Repo:
    plan({
        "1": [["set", "train.py", "X", "8"], ["print", "Hypothesis: X to 8"]],
        "2": [["set", "train.py", "X", "12"], ["print", "Hypothesis: the wrong way"]],
        "3": [["set", "train.py", "X", "5"], ["print", "Hypothesis: X to 5"]],
        "4": [["set", "train.py", "CRASH", "1"]],
        "5": [["set", "train.py", "X", "3"], ["print", "Hypothesis: X to 3"]],
    })  # fmt: skip
    assert cli("run", task.path, "--tag", "f", "--agent-command", AGENT, "--max-experiments", "5").code == 0
    return task


def test_report_writes_a_plot_and_a_summary(three_keeps: Repo, cli) -> None:
    result = cli("report", three_keeps.path, "--tag", "f")
    assert result.code == 0, result.err
    folder = three_keeps.path / ".overnight" / "f" / "report"
    png = (folder / "progress.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
    text = (folder / "report.md").read_text()
    # A deterministic metric: once measured twice alike, the noise is known to be zero and two runs decide
    # (one never keeps); no follow-up, as repeats cannot change a deterministic value.
    assert "baseline 50 (2 runs) → best 1 (2 runs, experiment 5): -49 (-98.00%)" in text
    assert "- experiments: 5 after the baseline, 3 kept; 3 keep, 1 baseline, 1 discard, 1 crash" in text
    assert " min of experiment runs" in text and " h " not in text  # one unit of time (minutes, for a short run)
    rows = [r for r in text.splitlines() if r.startswith("| ") and r[2].isdigit()]
    assert [r.split(" | ")[1] for r in rows] == ["X to 8", "X to 5", "X to 3"]
    assert "| 1 | X to 8 | 26 | 24 [24, 24] | 2 |" in text and "| 3 | X to 5 | 5 | 21 [21, 21] | 2 |" in text


def _view(tmp_path: Path, experiments: list[Experiment]) -> RunView:
    config = json.dumps({"metric": {"name": "loss", "goal": "min"}})
    return RunView("t", tmp_path, paths_for(tmp_path, "t"), {"task": ".", "config": config}, experiments, False, {})


def test_the_report_sums_up_usage_and_reads_times_as_utc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exps = [
        Experiment(0, Status.BASELINE, commit="a", metric=0.0, runs=1, started_at="2024-03-10T01:00:00Z"),
        Experiment(1, Status.KEEP, parent="a", commit="b", metric=1.5, runs=1, tokens_in=300, tokens_out=20,
                   cost_usd=0.25, ended_at="2024-03-10T04:00:00Z"),
        Experiment(2, Status.DISCARD, parent="b", commit="c", metric=2.0, tokens_in=30),
    ]  # fmt: skip
    # Local time in New York skips 02:00-03:00 that night: read as local time, the 3 h look like 2.
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        text = markdown(_view(tmp_path, exps))
    finally:
        monkeypatch.undo()
        time.tzset()
    assert "- time: 0 measurements, 0.0 h of experiment runs, 3.0 h from first start to last end" in text
    assert "- agents used 350 tokens, $0.2500" in text
    assert "- experiments: 2 after the baseline, 1 kept; 1 baseline, 1 keep, 1 discard" in text
    assert "→ best 1.5 (1 run, experiment 1): +1.5\n" in text  # no % of a baseline of 0


def test_the_plot_counts_as_status_does_and_ticks_whole_experiments(three_keeps: Repo, cli) -> None:
    import matplotlib.pyplot as plt

    from overnight import views
    from overnight.views import report

    assert "experiments: 5 after the baseline, 3 kept;" in cli("status", three_keeps.path, "--tag", "f").out
    fig = report.figure(views.load_view(three_keeps.path, "f"))
    try:
        ax = fig.axes[0]
        assert ax.get_title().endswith("5 experiments after the baseline, 3 kept")
        assert all(float(t).is_integer() for t in ax.get_xticks())
    finally:
        plt.close(fig)


def test_the_plot_of_one_experiment_says_one_experiment(task: Repo, plan, cli) -> None:
    import matplotlib.pyplot as plt

    from overnight import views
    from overnight.views import report

    plan({"1": [["set", "train.py", "X", "4"]]})
    assert cli("run", task.path, "--tag", "one", "--agent-command", AGENT, "--max-experiments", "1").code == 0
    assert cli("report", task.path).code == 0
    fig = report.figure(views.load_view(task.path, "one"))
    try:
        assert fig.axes[0].get_title().endswith(": score (lower is better), 1 experiment after the baseline, 1 kept")
    finally:
        plt.close(fig)


def test_finalize_names_a_push_only_where_there_is_a_remote(three_keeps: Repo, cli, tmp_path: Path) -> None:
    alone = cli("finalize", three_keeps.path, "--tag", "f")
    assert alone.code == 0, alone.err
    assert "git push" not in alone.out and "(the repository has no remote to push to)" in alone.out
    three_keeps.git("remote", "add", "upstream", str(tmp_path / "elsewhere.git"))
    shared = cli("finalize", three_keeps.path, "--tag", "f", "--force")
    assert "share it: git push upstream overnight/f-final" in shared.out


def test_finalize_writes_one_commit_per_keep_by_the_user(three_keeps: Repo, cli) -> None:
    before = three_keeps.snapshot()
    result = cli("finalize", three_keeps.path, "--tag", "f")
    assert result.code == 0, result.err
    assert "overnight/f-final: 3 commits, the kept changes #1, #3, #5" in result.out
    log = git(three_keeps.path, "log", "--format=%an|%s", "overnight/f-final").splitlines()
    assert log[:3] == ["Test|X to 3", "Test|X to 5", "Test|X to 8"]
    body = git(three_keeps.path, "log", "-1", "--format=%b", "overnight/f-final")
    assert "Kept by overnight run f, experiment 5: score 5 -> 1 (mean of 2 runs), a gain of 4 [4, 4]." in body
    assert git(three_keeps.path, "rev-parse", "overnight/f-final^{tree}") == git(
        three_keeps.path, "rev-parse", "overnight/f^{tree}"
    )
    assert three_keeps.snapshot() == before
    again = cli("finalize", three_keeps.path, "--tag", "f")
    assert again.code == 5 and "pass --force" in again.err
    squashed = cli("finalize", three_keeps.path, "--tag", "f", "--squash", "--force")
    assert squashed.code == 0 and "one commit" in squashed.out
    subject = git(three_keeps.path, "log", "-1", "--format=%s", "overnight/f-final").strip()
    assert subject == "overnight run f: 3 kept changes, score 50 -> 1"
    start = git(three_keeps.path, "rev-parse", "overnight/f-final^").strip()
    assert start == git(three_keeps.path, "rev-parse", "main").strip()


def test_finalize_without_a_git_identity_authors_as_overnight(three_keeps: Repo, cli, monkeypatch) -> None:
    for key in ("user.name", "user.email"):
        git(three_keeps.path, "config", "--unset", key)
    git(three_keeps.path, "config", "user.useConfigOnly", "true")  # no guessing a name from the host
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    result = cli("finalize", three_keeps.path, "--tag", "f")
    assert result.code == 0, result.err
    authors = git(three_keeps.path, "log", "--format=%an <%ae>", "-3", "overnight/f-final").splitlines()
    assert authors == ["overnight <overnight@localhost>"] * 3


def test_finalize_without_the_run_branch_says_so(three_keeps: Repo, cli) -> None:
    git(three_keeps.path, "branch", "-D", "overnight/f")
    result = cli("finalize", three_keeps.path, "--tag", "f")
    assert result.code == 5 and "branch overnight/f is gone" in result.err


def test_finalize_needs_a_keep(task: Repo, plan, cli) -> None:
    plan({"*": [["set", "train.py", "X", "20"]]})
    assert cli("run", task.path, "--tag", "n", "--agent-command", AGENT, "--max-experiments", "1").code == 0
    result = cli("finalize", task.path, "--tag", "n")
    assert result.code == 5 and "kept nothing yet" in result.err


def _state(repo: Repo) -> tuple[RunState, list[str]]:
    """A real run state on a real ledger and run branch, and two commits (the second on the first)."""
    commits = []
    for n in range(2):
        repo.write("train.py", f"X = {n}\n")
        commits.append(repo.commit(f"commit {n}"))
    branch = Branch(repo.path, "overnight/t")
    branch.move(commits[0], None)
    return RunState(Ledger(repo.path / "ledger.db", create=True), branch), commits


def _finish(state: RunState, parent: str, commit: str, status: Status, metric: float, hypothesis: str) -> None:
    """One experiment through the state's events, as a worker makes them."""
    exp = state.begin(lambda i: Experiment(id=i, status=Status.RUNNING, parent=parent, worker=0))
    exp = state.propose(replace(exp, hypothesis=hypothesis, commit=commit))
    ended = replace(exp, status=status, metric=metric, runs=1)
    state.keep(ended) if status is Status.KEEP else state.finish(ended)


def test_the_live_view_shows_workers_best_and_outcomes(repo: Repo) -> None:
    console = Console(record=True, width=140, force_terminal=True)
    state, (c0, c1) = _state(repo)
    view = LiveView(console, "val_bpb", Goal.MIN, budget_s=10, standing=state)
    state.watch(view.watch)  # as `overnight run` does: the view watches the run's state

    _finish(state, c0, c0, Status.BASELINE, 3.0, "baseline")
    one = state.propose(replace(state.begin(lambda i: Experiment(id=i, status=Status.RUNNING, parent=c0)),
                                hypothesis="raise the learning rate"))  # fmt: skip
    two = state.begin(lambda i: Experiment(id=i, status=Status.RUNNING, parent=c0, worker=1))
    state.propose(replace(two, hypothesis="wider hidden layer"))
    state.measuring(one.id)
    state.keep(replace(one, status=Status.KEEP, commit=c1, metric=2.9, runs=3))
    three = state.begin(lambda i: Experiment(id=i, status=Status.RUNNING, parent=c1))
    state.propose(replace(three, hypothesis="smaller batches"))
    state.measuring(three.id)
    state.measuring(three.id)  # measured again: the bar shows this measurement, not the sum of both
    console.print(view.render())
    text = console.export_text()
    assert "val_bpb (min) baseline 3  best 2.9 ×3 (-0.1, #1)" in text  # ×3: a mean of 3 runs
    assert "3 experiments after the baseline, 1 kept" in text  # as status counts them: the running ones too
    assert "#2" in text and "wider hidden layer" in text and "committing" in text
    assert "#3" in text and "run 2 · 0/10s" in text
    assert "#1    keep" in text  # the finished experiment's line, above the panel and among the outcomes
    assert repo.git("rev-parse", "overnight/t").strip() == c1


def test_the_live_view_shows_the_time_taken_when_the_script_does_not_read_the_budget(repo: Repo) -> None:
    console = Console(record=True, width=140, force_terminal=True)
    state, (c0, _) = _state(repo)
    view = LiveView(console, "val_bpb", Goal.MIN, budget_s=None, standing=state, timeout_s=600)
    state.watch(view.watch)
    _finish(state, c0, c0, Status.BASELINE, 3.0, "baseline")
    one = state.propose(replace(state.begin(lambda i: Experiment(id=i, status=Status.RUNNING, parent=c0)),
                                hypothesis="more epochs"))  # fmt: skip
    state.measuring(one.id)
    console.print(view.render())
    text = console.export_text()
    assert "run 1 · 0s" in text and "/600" not in text and "/10s" not in text


def test_the_plain_output_announces_a_run_while_runs_that_read_no_budget_take_long(capsys) -> None:
    watch = plain(budget_s=None)  # the script does not read its budget: the time runs took tells

    def announced(event: Event, exp: Experiment) -> bool:
        capsys.readouterr()
        watch(event, exp)
        return " running " in capsys.readouterr().out

    assert announced(Event.PROPOSE, Experiment(id=0, status=Status.RUNNING))  # none finished yet: not known
    assert not announced(Event.FINISH, Experiment(id=0, status=Status.BASELINE, duration_s=SLOW_S + 1))
    assert announced(Event.PROPOSE, Experiment(id=1, status=Status.RUNNING, hypothesis="more epochs"))
    watch(Event.FINISH, Experiment(id=1, status=Status.DISCARD, duration_s=SLOW_S - 1))
    watch(Event.UNDO, Experiment(id=0, status=Status.KEEP, duration_s=SLOW_S + 1))  # ran long ago: not the last
    assert not announced(Event.PROPOSE, Experiment(id=2, status=Status.RUNNING, hypothesis="fewer epochs"))
    watch(Event.KEEP, Experiment(id=2, status=Status.KEEP, duration_s=SLOW_S))
    assert announced(Event.PROPOSE, Experiment(id=3, status=Status.RUNNING))
    reads = plain(budget_s=SLOW_S - 1)  # a budget the script reads: its runs take that long, whatever came before
    capsys.readouterr()
    reads(Event.FINISH, Experiment(id=0, status=Status.BASELINE, duration_s=SLOW_S + 1))
    reads(Event.PROPOSE, Experiment(id=1, status=Status.RUNNING))
    assert " running " not in capsys.readouterr().out


def test_the_live_view_of_a_resumed_run_starts_from_what_was_recorded(repo: Repo) -> None:
    state, (c0, c1) = _state(repo)
    _finish(state, c0, c0, Status.BASELINE, 3.0, "baseline")
    _finish(state, c0, c0, Status.DISCARD, 3.1, "a")
    _finish(state, c0, c1, Status.KEEP, 2.5, "b")
    resumed = RunState(Ledger(repo.path / "ledger.db"), Branch(repo.path, "overnight/t"))
    console = Console(record=True, width=140, force_terminal=True)
    console.print(LiveView(console, "loss", Goal.MIN, budget_s=10, standing=resumed).render())
    text = console.export_text()
    assert "loss (min) baseline 3  best 2.5 (-0.5, #2)" in text and "2 experiments after the baseline, 1 kept" in text


class _Standing:
    """A run's standing as the live view reads it: a baseline measured three times since it was first shown."""

    def __init__(self, baseline: Experiment, running: Experiment) -> None:
        self.baseline, self.running = baseline, running

    def snapshot(self) -> tuple[Experiment, Experiment, tuple[Experiment, ...], tuple[Experiment, ...]]:
        return self.baseline, self.baseline, (self.baseline,), (self.running,)


def test_the_live_view_shows_outcomes_as_they_stand_and_the_whole_budget_at_130_columns() -> None:
    console = Console(record=True, width=130, force_terminal=True)
    first = Experiment(0, Status.BASELINE, metric=4.67422, runs=1, hypothesis="baseline")
    long = "raise the learning rate from 1e-3 to 3e-3 and lower the warmup from 200 to 50 steps, with cosine decay"
    running = Experiment(1, Status.RUNNING, hypothesis=long)
    view = LiveView(console, "val_bpb", Goal.MIN, budget_s=300, standing=_Standing(replace(first, metric=4.57421,
                    runs=3), running))  # fmt: skip
    view.watch(Event.FINISH, first)  # shown when it ended: one run
    view.watch(Event.PROPOSE, running)
    view.watch(Event.RUN, running)
    console.print(view.render())
    panel = console.export_text().split("val_bpb (min)", 1)[1]
    assert "baseline 4.57421 ×3   1 experiment after the baseline, 0 kept" in panel
    assert line(replace(first, metric=4.57421, runs=3)) in panel and "4.67422" not in panel  # the mean, as elsewhere
    assert "run 1 · 0/300s" in panel  # the budget column is whole; the hypothesis gives way


class _Locked:
    """A run's standing behind the state's lock, as RunState's: it says when a reader is about to wait for it."""

    def __init__(self, standing: _Standing) -> None:
        self.standing, self.lock, self.waiting = standing, threading.RLock(), threading.Event()
        self.moved = threading.Event()  # a reader waits for the lock, or a refresh ended (set by the test)

    def snapshot(self) -> tuple[Experiment, Experiment, tuple[Experiment, ...], tuple[Experiment, ...]]:
        if not self.lock.acquire(blocking=False):
            self.waiting.set()
            self.moved.set()
            self.lock.acquire()
        try:
            return self.standing.snapshot()
        finally:
            self.lock.release()


def test_the_live_view_never_waits_for_the_state_while_rich_refreshes_it() -> None:
    # The state calls watch under its lock, and watch prints through rich (the Live display's lock); rich's
    # refresh thread renders under that lock. A render that read the state then would wait for the worker,
    # which waits for the refresh: the night hung so once. Here the refresh runs while a worker holds the
    # state's lock, and the worker ends an experiment as soon as the refresh is either done or waiting for it.
    console = Console(record=True, width=140, force_terminal=True)
    first = Experiment(0, Status.BASELINE, metric=4.0, runs=1, hypothesis="baseline")
    locked = _Locked(_Standing(first, Experiment(1, Status.RUNNING, hypothesis="h")))
    view = LiveView(console, "loss", Goal.MIN, budget_s=10, standing=locked)
    refreshed, ended = threading.Event(), threading.Event()

    def refresh() -> None:
        view._live.refresh()
        refreshed.set()
        locked.moved.set()

    def worker() -> None:
        with locked.lock:
            threading.Thread(target=refresh, daemon=True).start()
            locked.moved.wait(120)  # the refresh is either done or waiting for this lock
            view.watch(Event.FINISH, first)  # prints: waits for the Live display's lock
        ended.set()

    view.__enter__()
    threading.Thread(target=worker, daemon=True).start()
    done = ended.wait(120) and refreshed.wait(120)
    if done:  # stopping a display whose lock is held for good would hang the test, not fail it
        view.__exit__(None, None, None)
    assert done, "the live view and the state waited for each other"
    assert not locked.waiting.is_set()  # render read what watch copied, never the state


def test_the_plain_line() -> None:
    exp = Experiment(id=7, status=Status.CRASH, hypothesis="h", reason="exit 1", duration_s=1.25)
    assert line(exp) == f"#7    crash       {'':>12} {'':>3} {'1.2s':>8}  h  [exit 1]"


def test_report_from_the_command_line_on_a_fresh_run_dir(three_keeps: Repo, cli, tmp_path: Path) -> None:
    result = cli("report", three_keeps.path, "--tag", "f", "--out", tmp_path / "r")
    assert result.code == 0 and (tmp_path / "r" / "progress.png").exists()


NOISY = """\
import os
X = 10.0
print("score:", (X - 3) ** 2 + 1 + 0.1 * (int(os.environ["OVERNIGHT_SEED"]) % 3))
"""


def test_the_plot_shows_intervals_and_a_tune_run_each_constant_against_the_metric(repo: Repo, cli) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.container import ErrorbarContainer

    from overnight import views
    from overnight.views import report

    tune_task(repo, NOISY)
    assert cli("run", repo.path, "--tag", "t", "--max-experiments", "3").code == 0
    result = cli("report", repo.path)
    assert result.code == 0, result.err
    folder = repo.path / ".overnight" / "t" / "report"
    assert (folder / "parameters.png").read_bytes().startswith(b"\x89PNG")
    assert "![each constant against score](parameters.png)" in (folder / "report.md").read_text()
    view = views.load_view(repo.path, "t")
    assert [name for name in report.tuned(view)] == ["X"]
    baseline = view.baseline
    assert baseline is not None and baseline.runs >= 2 and report.interval(view, baseline) is not None
    fig = report.figure(view)
    try:
        assert any(isinstance(c, ErrorbarContainer) for c in fig.axes[0].containers)
    finally:
        plt.close(fig)


# an int constant and a float one, the metric varied by the seed
INTS = """\
import os
N = 10
LR = 0.001
print("score:", (N - 3) ** 2 + abs(LR - 0.0013) * 1000 + 0.1 * (int(os.environ["OVERNIGHT_SEED"]) % 3))
"""


def test_the_constants_plot_ticks_an_int_constant_at_whole_values_and_few_enough_to_read(repo: Repo, cli) -> None:
    import matplotlib.pyplot as plt

    from overnight import views
    from overnight.views import report

    tune_task(repo, INTS, "[agent.tune]\nranges = { N = [6, 14] }\n")
    assert cli("run", repo.path, "--tag", "i", "--max-experiments", "4").code == 0
    assert cli("report", repo.path).code == 0
    view = views.load_view(repo.path, "i")
    fig = report.parameters_figure(view)
    assert fig is not None
    try:
        axes = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
        assert set(axes) == {"LR", "N"}
        low, high = axes["N"].get_xlim()
        shown = [t for t in axes["N"].get_xticks() if low <= t <= high]
        assert shown and all(float(t).is_integer() for t in shown)  # no tick at N = 10.5
        for ax in axes.values():
            if ax.get_xscale() == "linear":
                assert len([t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]) <= 5
    finally:
        plt.close(fig)
