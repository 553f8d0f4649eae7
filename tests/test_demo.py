"""`overnight demo` sets up a real repository and improves the metric."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ledger_rows


def test_demo_runs_and_improves(tmp_path: Path, cli) -> None:
    target = tmp_path / "demo"
    result = cli("demo", target, "--example", "quickstart", "--max-experiments", "12")
    assert result.code == 0, result.err
    assert "result:   baseline" in result.out
    rows = ledger_rows(target, "demo")
    assert rows[0]["status"] == "baseline" and len(rows) == 13
    kept = [r for r in rows if r["status"] == "keep"]
    assert kept and kept[-1]["metric"] < rows[0]["metric"]
    assert (target / ".git").is_dir()


@pytest.mark.slow  # the default demo: 20 tinylm experiments, a minute or two
def test_the_default_demo_keeps_changes_and_says_what_a_real_night_needs(tmp_path: Path, cli) -> None:
    target = tmp_path / "demo"
    result = cli("demo", target)
    assert result.code == 0, result.err
    rows = ledger_rows(target, "demo")
    assert rows[0]["status"] == "baseline" and len(rows) == 21
    # A fixed amount of work: every run trained the same 2,000 steps, however busy the machine.
    assert rows[0]["metrics"]["num_steps"] == 2000
    kept = [r for r in rows if r["status"] == "keep"]
    assert kept and kept[-1]["metric"] < rows[0]["metric"]
    assert "kept" in result.out and "result:   baseline" in result.out
    closing = result.out[result.out.index("That was a demo") :]
    for needed in ("OVERNIGHT_BUDGET_S", "minutes", "OVERNIGHT_SEED", "overnight init", "overnight verify"):
        assert needed in closing
    config = (target / "overnight.toml").read_text()
    assert "--bytes 128000" in config and "disturbed_load = 0" in config


def test_demo_never_writes_into_a_non_empty_folder(tmp_path: Path, cli) -> None:
    (tmp_path / "mine.txt").write_text("keep me\n")
    result = cli("demo", tmp_path)
    assert result.code == 2 and "not empty" in result.err
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_the_tinylm_demo_runs_a_fixed_amount_of_work_unless_given_a_budget(tmp_path: Path) -> None:
    import sys

    from overnight.cli import demo
    from overnight.config import load_config

    fixed = load_config(demo.prepare("tinylm", tmp_path / "fixed") / "overnight.toml")
    assert fixed.task.run == f"OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 {sys.executable} train.py --bytes 128000"
    assert fixed.judge.disturbed_load == 0  # the load cannot change a fixed amount of work's metric
    timed = load_config(demo.prepare("tinylm", tmp_path / "timed", budget_s=20) / "overnight.toml")
    assert timed.task.run == f"OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 {sys.executable} train.py"
    assert timed.task.budget_s == 20 and timed.judge.disturbed_load == 0.25


def _on_a_terminal(*args: str) -> str:
    """Run the overnight CLI with a terminal for its output (the live view, not the plain lines): what it showed,
    escape sequences removed."""
    import os
    import pty
    import re
    import subprocess
    import sys

    main, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "OVERNIGHT_PLAIN"} | {"COLUMNS": "130", "TERM": "xterm"}
    process = subprocess.Popen([sys.executable, "-m", "overnight", *args], stdin=subprocess.DEVNULL,
                               stdout=secondary, stderr=secondary, env=env)  # fmt: skip
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the process ended and closed its side
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    assert process.wait() == 0, b"".join(chunks).decode("utf-8", "replace")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode("utf-8", "replace"))


@pytest.mark.slow  # a tinylm baseline and three experiments, on a terminal, then verify
def test_the_live_view_of_the_fixed_work_demo_shows_the_time_taken_not_a_budget(tmp_path: Path) -> None:
    """tinylm's train.py reads OVERNIGHT_BUDGET_S, but the demo runs it with --bytes, a fixed amount of work:
    the live view shows each run's time taken ("run 1 · 2s"), not progress against a 30 s budget nobody reads;
    and so do the run resumed with the command the demo prints, and verify."""
    import re

    target = tmp_path / "demo"
    screen = _on_a_terminal("demo", str(target), "--max-experiments", "2")
    assert "result:   baseline" in screen
    assert re.search(r"run \d · \d+s", screen), screen  # the panel showed a run under way, with its time
    assert not re.search(r"\d+/30s", screen), screen  # and never a budget the run does not read
    assert "budget: train.py does not read" not in screen  # the demo says why itself, in its closing lines
    resumed = _on_a_terminal("run", str(target), "--tag", "demo", "--max-experiments", "3")
    assert "resuming run demo" in resumed and re.search(r"run \d · \d+s", resumed), resumed
    assert not re.search(r"\d+/30s", resumed), resumed
    # verify does not say its runs were at the 30 s budget either (the demo keeps #2: fixed work, the same keeps)
    import subprocess
    import sys

    verify = subprocess.run([sys.executable, "-m", "overnight", "verify", str(target), "--runs", "2"],
                            capture_output=True, text=True)  # fmt: skip
    assert verify.returncode == 0, verify.stderr
    assert "budget 30 s (not read by the script: each run went to its end)" in verify.stdout, verify.stdout
