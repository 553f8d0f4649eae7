"""What issue 26 found working and asked to keep: the closing block of a run, one best and one count on every
screen (the run's end, status, runs, log, show, report, plot, dashboard), `show` with each seed's measurement,
and `log --format tsv` as autoresearch's results.tsv. One run through the command line, every screen read."""

from __future__ import annotations

import re

from conftest import AGENT, Repo


def test_every_screen_tells_the_same_best_and_counts_and_the_closing_block_stays(task: Repo, plan, cli) -> None:
    import matplotlib.pyplot as plt

    from overnight import views
    from overnight.views import report
    from overnight.views.dashboard.server import run_summary

    plan(
        {
            "1": [["set", "train.py", "X", "5"], ["print", "Hypothesis: closer to three"]],
            "2": [["set", "train.py", "X", "9"], ["print", "Hypothesis: too far"]],
            "3": [["set", "train.py", "X", "4"], ["print", "Hypothesis: closer still"]],
        }
    )
    result = cli("run", task.path, "--tag", "s", "--agent-command", AGENT, "--max-experiments", "3")
    assert result.code == 0, result.err
    closing = result.out[result.out.index("\nstopped:") :]
    labels = [line.split(":")[0] for line in closing.strip().splitlines()]
    assert labels == ["stopped", "result", "ledger", "branch", "state", "resume"], closing

    best = views.load_view(task.path, "s").best
    assert best is not None and best.id == 3 and best.metric == 2
    shown = f"{best.metric:g} (mean of {best.runs} runs)"
    assert f"→ best {shown}: " in result.out and "; 2 kept" in result.out
    status = cli("status", task.path).out
    assert f"best:        {shown}  (experiment 3;" in status and "experiments: 3 after the baseline, 2 kept;" in status
    runs = cli("runs", task.path).out.splitlines()[1].split()
    assert runs[0] == "s" and runs[4:7] == ["3", "2", "2"]  # experiments, kept, the best
    log = cli("log", task.path).out.splitlines()
    assert log[4].split()[:3] == ["3", "keep", "2"]
    show = cli("show", "3", task.path).out
    assert f"score:       {shown}" in show
    # each run of it, by seed: what its estimate is the mean of
    assert re.search(r"measurements: seed 0: 2 \(", show) and "seed 1: 2 (" in show, show
    assert cli("report", task.path).code == 0
    written = (task.path / ".overnight" / "s" / "report" / "report.md").read_text()
    assert f"→ best 2 ({best.runs} runs, experiment 3)" in written
    assert "- experiments: 3 after the baseline, 2 kept;" in written
    view = views.load_view(task.path, "s")
    fig = report.figure(view)
    try:
        assert fig.axes[0].get_title().endswith("3 experiments after the baseline, 2 kept")
    finally:
        plt.close(fig)
    summary = run_summary(view)
    assert summary["best"]["metric"] == best.metric and summary["best"]["id"] == 3
    assert summary["after_baseline"] == 3 and summary["kept"] == 2

    tsv = cli("log", task.path, "--format", "tsv").out.splitlines()
    assert tsv[0] == "commit\tscore\tmemory_gb\tstatus\tdescription"  # autoresearch's results.tsv
    assert [line.split("\t")[3] for line in tsv[1:]] == ["baseline", "keep", "discard", "keep"]
