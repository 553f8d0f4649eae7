"""The brief and the lab notebook, through real runs: what a later agent is told, in JSON and in text.

A scripted command agent (tests/fakes/agent.py) makes a run whose experiments end every
way that matters to a brief, copies the brief it is given to a mark file, and leaves notes
both ways (a ``Note:`` output line and the OVERNIGHT_NOTES file). The tests then read the
briefs later agents got, the ledger, `overnight show` and `overnight brief`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import AGENT, Repo
from overnight.agents._base import Context
from overnight.agents.brief import Entry, Facts, Progress
from overnight.agents.prompt import brief as brief_text
from overnight.agents.prompt import history_text
from overnight.config import parse_config
from overnight.records import Experiment, Note, Status
from overnight.run.ledger import Ledger
from overnight.run.paths import paths_for

TRAIN = """\
import os
X = 10
STEPS = 300
BROKEN = 0


def schedule(step):
    if BROKEN:
        raise ValueError("the warmup ratio went negative")
    return step


schedule(1)
print("---")
print(f"score: {(X - 3) ** 2 + 1 + 0.01 * int(os.environ['OVERNIGHT_SEED'])}")
print(f"num_steps: {STEPS}")
print("secret: " + os.environ.get("BRIEF_SECRET_TOKEN", "none"))
"""

CONFIG = f"""\
[task]
run = "{sys.executable} train.py"
editable = ["train.py"]
budget_s = 5
timeout_s = 30

[metric]
name = "score"
goal = "min"
guards = ["num_steps >= 0.5 * best"]

[judge]
min_delta = 0.0
noise_runs = 3
"""


def _copy(experiment: int) -> list[object]:
    return ["shell", f'cp "$OVERNIGHT_BRIEF" "$MARK_DIR/brief-{experiment}.json"']


PLAN: dict[str, list[list[object]]] = {
    # a keep, with a note in its output and one in the notes file
    "1": [_copy(1), ["set", "train.py", "X", "5"], ["print", "Hypothesis: move X toward 3"],
          ["print", "Note: X closer to 3 lowers the score a lot"],
          ["shell", 'echo "X below 3 is untested" >> "$OVERNIGHT_NOTES"']],
    # a crash with a traceback
    "2": [_copy(2), ["set", "train.py", "BROKEN", "1"], ["print", "Hypothesis: a warmup schedule"]],
    # a discard whose secondary metric collapsed
    "3": [_copy(3), ["set", "train.py", "X", "7"], ["set", "train.py", "STEPS", "66"],
          ["print", "Hypothesis: X = 7 with fewer steps"]],
    # a proposal that fails: its hypothesis and notes are still kept
    "4": [_copy(4), ["print", "Hypothesis: rewrite the schedule"], ["print", "Note: the schedule is fragile"],
          ["exit", 3]],
    "5": [_copy(5), ["set", "train.py", "X", "4"], ["print", "Hypothesis: X = 4"]],
}  # fmt: skip


@pytest.fixture
def night(repo: Repo, plan, cli, marks: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    monkeypatch.setenv("BRIEF_SECRET_TOKEN", "sk-brief-0123456789abcdef")
    repo.write("train.py", TRAIN)
    repo.write("overnight.toml", CONFIG)
    repo.write("program.md", "Make score small.\n")
    repo.commit("task")
    plan(PLAN)
    result = cli("run", repo.path, "--tag", "b", "--agent-command", AGENT, "--max-experiments", "5")
    assert result.code == 0, result.err
    return repo


def _brief(marks: Path, experiment: int) -> dict:
    return json.loads((marks / f"brief-{experiment}.json").read_text())


def test_a_later_agent_is_told_every_outcome_in_detail(night: Repo, marks: Path) -> None:
    first, later = _brief(marks, 1), _brief(marks, 5)
    # the keep rule with the noise it is judged with (the baseline's three runs: seeds 0, 1, 2)
    assert "Keep rule:" in first["rule"] and "95% confidence" in first["rule"]
    assert "standard deviation 0.01" in first["rule"] and "pooled from 3 runs" in first["rule"]
    assert first["noise"]["runs"] == 3
    assert len(first["guards"]) == 1 and "num_steps" in first["guards"][0] and "150" in first["guards"][0]
    by_id = {e["id"]: e for e in later["experiments"]}
    keep, crash, discard, failed = by_id[1], by_id[2], by_id[3], by_id[4]
    assert keep["status"] == "keep" and keep["runs"] >= 2 and keep["judged_against"]["id"] == 0
    assert keep["verdict"] == "better" and keep["diff"].count("+X = 5") == 1
    # the crash: its traceback, with the file and the line
    assert crash["status"] == "crash"
    assert "Traceback (most recent call last)" in crash["log_tail"]
    assert 'train.py", line 9, in schedule' in crash["log_tail"]
    assert "ValueError: the warmup ratio went negative" in crash["log_tail"]
    # the discard: why, against what, and that its steps collapsed
    assert discard["status"] == "discard" and discard["reason"]
    assert discard["judged_against"]["id"] == 1 and discard["delta"] > 0
    assert discard["changed_metrics"]["num_steps"] == {"before": 300.0, "after": 66.0}
    # the failed proposal keeps what it said it tried
    assert failed["status"] == "rejected" and failed["hypothesis"] == "rewrite the schedule"
    # the notebook: both ways of writing, with the experiment that wrote each
    notes = [(n["experiment"], n["text"]) for n in later["notes"]]
    assert notes == [
        (1, "X closer to 3 lowers the score a lot"),
        (1, "X below 3 is untested"),
        (4, "the schedule is fragile"),
    ]
    assert later["notes_path"].endswith("/notes.md") and "/notes/5-" in later["notes_path"]
    assert later["progress"]["experiment"] == 5 and later["progress"]["kept"] == 1
    assert later["progress"]["experiments_left"] == 0
    # what no agent may see: a credential of the environment
    assert "sk-brief-0123456789abcdef" not in json.dumps(later)


def test_the_notebook_is_in_the_ledger_and_in_show(night: Repo, cli) -> None:
    with Ledger(paths_for(night.path, "b").ledger) as ledger:
        notes = ledger.notes()
    assert [(n.experiment, n.worker, n.agent) for n in notes] == [(1, 0, "command")] * 2 + [(4, 0, "command")]
    assert all(n.at for n in notes)
    shown = cli("show", "1", night.path, "--tag", "b").out
    assert "note:        X closer to 3 lowers the score a lot" in shown
    assert "note:        X below 3 is untested" in shown
    report = cli("report", night.path, "--tag", "b")
    assert report.code == 0, report.err
    text = (paths_for(night.path, "b").dir / "report" / "report.md").read_text()
    assert "## Lab notebook" in text
    assert "- #1 (keep; worker 0, command): X closer to 3 lowers the score a lot" in text
    assert "- #4 (rejected; worker 0, command): the schedule is fragile" in text


def test_overnight_brief_prints_the_next_brief_for_each_kind(night: Repo, cli) -> None:
    before = night.snapshot()
    as_json = cli("brief", night.path, "--tag", "b")  # the run used a command agent
    assert as_json.code == 0, as_json.err
    data = json.loads(as_json.out)
    assert data["experiment_id"] == 6 and len(data["notes"]) == 3
    assert {e["id"] for e in data["experiments"]} == {0, 1, 2, 3, 4, 5}
    text = cli("brief", night.path, "--tag", "b", "--agent", "claude")
    assert text.code == 0, text.err
    out = text.out
    assert out.startswith("You are a researcher")  # the coding CLI's rules come first
    assert "X = 5" in out  # the files at the best
    assert "Keep rule:" in out and "pooled from" in out
    assert "- #2 crash — a warmup schedule" in out and "ValueError: the warmup ratio went negative" in out
    assert "also moved: num_steps 300 → 66 (-78%)" in out
    assert "#4 (worker 0, command): the schedule is fragile" in out
    assert "This is experiment 6 of the run; 2 changes kept so far." in out
    chat = cli("brief", night.path, "--tag", "b", "--agent", "anthropic").out
    assert chat.startswith("=== system ===") and "=== user ===" in chat
    assert night.snapshot() == before  # nothing of the user's was touched
    bad = cli("brief", night.path, "--tag", "b", "--agent", "robot")
    assert bad.code == 2 and "unknown agent kind 'robot'" in bad.err
    missing = cli("brief", night.path, "--tag", "nope")
    assert missing.code != 0 and "no run with tag 'nope'" in missing.err


# -- the history within a budget ------------------------------------------------------------------


def _entry(i: int, status: str, **kw: object) -> Entry:
    values: dict = dict(id=i, status=status, hypothesis=f"idea {i}", agent="x", worker=0, metric=1.0 + i / 1000,
                        runs=2, reference_id=0, reference=1.0, reference_runs=3, delta=i / 1000, verdict="worse",
                        gain_ci=None, reason=f"reason {i}", changed={})  # fmt: skip
    values.update(kw)
    return Entry(**values)


def test_a_long_history_keeps_the_keeps_and_the_recent_past_and_says_what_it_dropped() -> None:
    entries = [_entry(0, "baseline")]
    for i in range(1, 400):
        status = "keep" if i in (17, 150) else "crash" if i % 10 == 0 else "discard"
        tail = f"Traceback ...\nValueError: {i}" if status == "crash" else ""
        entries.append(_entry(i, status, tail=tail, diff=f"-X = {i}\n+X = {i + 1}"))
    facts = Facts(metric="loss", rule="r", guards=(), progress=None, entries=tuple(entries), running=(), notes=())
    text = history_text(facts, 6000)
    assert len(text) <= 6000
    assert "- #17 keep" in text and "- #150 keep" in text  # every keep
    assert all(f"- #{i} " in text for i in range(388, 400))  # the recent past
    assert "ValueError: 390" in text  # the recent crash's tail
    assert "- #5 discard" not in text  # the old middle
    assert "older experiments in #" in text and "are not shown one by one: " in text and "crash" in text
    assert text.index("- #17 keep") < text.index("- #150 keep") < text.index("- #399 ")  # oldest first
    roomy = history_text(facts, 10**7)
    assert "not shown" not in roomy and "- #5 discard" in roomy


def test_the_text_brief_stays_within_its_budget_with_everything_in_it(tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text("LR = 0.1\n")
    config = parse_config({"task": {"run": "python t.py", "editable": ["t.py"]}, "metric": {"name": "loss"}})
    entries = tuple(_entry(i, "discard", tail="x\n" * 30, diff="d\n" * 40) for i in range(1, 300))
    facts = Facts(metric="loss", rule="Keep rule: r", guards=("peak_memory_mb <= 1.05 × the best's",),
                  progress=Progress(experiment=300, kept=0, started=10, max_experiments=20), entries=entries,
                  running=((301, "try a bigger batch", "claude", 1),), notes=())  # fmt: skip
    history = tuple(Experiment(id=e.id, status=Status.DISCARD, hypothesis=e.hypothesis) for e in entries)
    context = Context(
        experiment_id=300, program="p", config=config, worktree=tmp_path, task_dir=tmp_path, editable=("t.py",),
        baseline=1.0, best=1.0, best_commit="c", history=history, log_path=tmp_path / "a", brief_path=tmp_path / "b",
        facts=facts,
    )  # fmt: skip
    text = brief_text(context, 3000)
    assert len(text) <= 3000 * 4
    assert "Keep rule: r" in text and "peak_memory_mb <= 1.05" in text
    assert "10 more experiments after this one (--max-experiments 20)" in text
    assert "- #301 (worker 1, claude): try a bigger batch" in text
    assert "- #299 discard" in text


def test_an_entry_whose_verdict_the_moving_noise_leaves_alone_is_not_made_again() -> None:
    # The noise moves with almost every repeated run; an entry depends on it only through its verdict.
    from dataclasses import replace

    from overnight.agents import brief
    from overnight.agents.known import Known
    from overnight.bookkeeping import Judged

    config = parse_config({"task": {"run": "true", "editable": ["t.py"]}, "metric": {"name": "loss", "goal": "min"}})
    base = Experiment(id=0, status=Status.BASELINE, commit="c0", metric=5.1, runs=2)
    history = [base]
    for i, metric in enumerate([9.0, 5.3, 1.0], start=1):  # far worse, a little worse, far better
        exp = Experiment(id=i, status=Status.DISCARD, commit=f"c{i}", parent="c0", metric=metric, runs=1)
        judged = Judged(id=0, estimate=5.1, runs=2)
        history.append(replace(exp, bookkeeping=replace(exp.bookkeeping, judged_against=judged)))
    known: Known[Entry] = Known()
    wide = brief.gather(config=config, history=history, samples={(0, 0): [5.0, 5.2]}, known=known)
    narrow = brief.gather(config=config, history=history, samples={(0, 0): [5.05, 5.15]}, known=known)
    assert [e.verdict for e in wide.entries[1:]] == ["worse", "within the noise", "better, but not proven"]
    assert [e.verdict for e in narrow.entries[1:]] == ["worse", "worse", "better, but not proven"]
    assert narrow.entries[1] is wide.entries[1] and narrow.entries[3] is wide.entries[3]  # kept as they were
    assert narrow == brief.gather(config=config, history=history, samples={(0, 0): [5.05, 5.15]})  # as made anew


def test_entries_kept_from_earlier_briefs_are_those_made_anew() -> None:
    # Known gives back an entry only when what it was made from is the same: the facts of a growing
    # history, a re-measured best and a noise that moves are those gather makes without it.
    from dataclasses import replace

    from overnight.agents import brief
    from overnight.agents.known import Known
    from overnight.bookkeeping import Judged

    config = parse_config({"task": {"run": "true", "editable": ["t.py"]}, "metric": {"name": "loss", "goal": "min"}})
    base = Experiment(id=0, status=Status.BASELINE, commit="c0", metric=5.0, runs=1, metrics={"loss": 5.0, "mem": 10.0})
    history: list[Experiment] = [base]
    samples: dict[tuple[int, int], list[float]] = {(0, 0): [5.0]}
    known: Known[Entry] = Known()
    for i in range(1, 30):
        best = next(e for e in reversed(history) if e.status in (Status.KEEP, Status.BASELINE))
        status = Status.KEEP if i % 7 == 0 else Status.CRASH if i % 5 == 0 else Status.DISCARD
        judged = Judged(id=best.id, estimate=best.metric, runs=best.runs) if status is Status.DISCARD else None
        exp = Experiment(id=i, status=status, commit=f"c{i}", parent=best.commit, metric=5.0 - i / 10, runs=1,
                         metrics={"loss": 5.0 - i / 10, "mem": 10.0 + i}, hypothesis=f"idea {i}")  # fmt: skip
        if judged is not None:
            exp = replace(exp, bookkeeping=replace(exp.bookkeeping, judged_against=judged))
        history.append(exp)
        samples[(i, 0)] = [exp.metric or 0.0]
        if i % 4 == 0:  # the best measured again: a new record of it, and the noise moves
            again = history.index(best)
            history[again] = replace(best, runs=best.runs + 1)
            samples[(best.id, best.runs)] = [(best.metric or 0.0) + 0.01 * i, best.metric or 0.0]
        notes = [Note(experiment=1, worker=0, agent="x", text="a note")]
        fresh = brief.gather(config=config, history=history, samples=samples, notes=notes)
        kept = brief.gather(config=config, history=history, samples=samples, notes=notes, known=known)
        assert kept == fresh
