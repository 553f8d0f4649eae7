"""Seeds that reach the script: a script that fixes its seed in code, with and without ``[judge] seed``."""

from __future__ import annotations

import sys

import pytest

from conftest import AGENT, Repo, ledger_rows
from overnight.errors import ConfigError
from overnight.judge import seeds
from overnight.task import Task

# score = (X - 3)^2 + 1 + noise (larger with X), the noise drawn from a generator seeded in code, as most
# training scripts do: every run of a commit is the same draw unless something changes SEED.
FIXED = """\
import random
SEED = 42
X = 10
rng = random.Random(SEED)
print(f"score: {(X - 3) ** 2 + 1 + rng.gauss(0, 1) * (1 + X / 10):.6f}")
"""

CONFIG = f"""\
[task]
run = "{sys.executable} train.py"
editable = ["train.py"]
budget_s = 5

[metric]
name = "score"
goal = "min"

[judge]
{{judge}}
"""


@pytest.fixture
def fixed(repo: Repo) -> Repo:
    repo.write("train.py", FIXED)
    repo.write("overnight.toml", CONFIG.format(judge=""))
    repo.write("program.md", "Make score small.\n")
    repo.commit("task")
    return repo


def _name_the_seed(repo: Repo) -> None:
    repo.write("overnight.toml", CONFIG.format(judge='seed = "SEED"'))
    repo.commit("name the seed")


def test_noise_says_the_seed_does_not_reach_a_script_that_fixes_it(fixed: Repo, cli) -> None:
    result = cli("noise", fixed.path, "--tag", "n", "--runs", "3")
    assert result.code == 0, result.err
    assert "every one of its 3 measurements gave" in result.out
    assert "did not reach the script" in result.out and "standard deviation" not in result.out
    assert "min_delta = 0" not in result.out  # the old advice for a metric with no noise
    assert '[judge] seed = "SEED"' in result.out  # the way out, with the constant it found


def test_a_named_seed_makes_each_run_a_different_draw_and_leaves_the_commit_alone(fixed: Repo, cli) -> None:
    _name_the_seed(fixed)
    head = fixed.git("rev-parse", "HEAD")
    result = cli("noise", fixed.path, "--tag", "n", "--runs", "4")
    assert result.code == 0, result.err
    assert "standard deviation" in result.out and "did not reach" not in result.out
    values = result.out.splitlines()[1].removeprefix("score: ").split(", ")
    assert len(set(values)) == 4  # four seeds, four draws
    # the same seeds give the same draws: seed n is what SEED was set to
    again = cli("noise", fixed.path, "--tag", "m", "--runs", "2")
    assert again.out.splitlines()[1].removeprefix("score: ").split(", ") == values[:2]
    assert fixed.git("status", "--porcelain") == "" and fixed.git("rev-parse", "HEAD") == head
    branch = fixed.git("show", "overnight/n:train.py")
    assert "SEED = 42" in branch  # the run branch holds the commit as it was, not a rewritten copy


def test_a_change_of_the_seed_value_is_the_no_op_it_is(fixed: Repo, plan, cli) -> None:
    _name_the_seed(fixed)
    plan({"1": [["set", "train.py", "SEED", "7"], ["print", "Hypothesis: another seed"]]})
    assert cli("run", fixed.path, "--tag", "r", "--agent-command", AGENT, "--max-experiments", "1").code == 0
    rows = ledger_rows(fixed.path, "r")
    assert rows[1]["status"] == "discard" and rows[1]["metric"] == rows[0]["metric"]  # the same draws as the best
    assert "no better than the best (noise unknown; threshold 0" in rows[1]["reason"]
    brief = cli("brief", fixed.path, "--tag", "r", "--agent", "claude").out
    assert "The harness sets SEED to each run's seed" in brief


def test_without_a_seed_re_rolls_are_not_given_zero_width_intervals(fixed: Repo, plan, cli) -> None:
    # Another seed value is a re-roll: with the seed fixed in code it looks like a real, exact gain or loss.
    plan({str(i): [["set", "train.py", "SEED", str(s)], ["print", f"Hypothesis: seed {s}"]]
          for i, s in enumerate((1, 2, 3, 4, 5, 6), 1)})  # fmt: skip
    result = cli("run", fixed.path, "--tag", "u", "--agent-command", AGENT, "--max-experiments", "6")
    assert result.code == 0, result.err
    assert "no script of the task reads OVERNIGHT_SEED" in result.out  # said at the start
    rows = ledger_rows(fixed.path, "u")
    kept = [r for r in rows if r["status"] == "keep"]
    assert kept, "some re-roll beats seed 42 by luck: this test needs one"
    for r in kept:
        assert r["ci_low"] is None and r["ci_high"] is None
        assert "every run repeated its value exactly" in r["reason"]
        assert "follow-up" not in r["reason"]  # none is taken of runs that repeat exactly: none is claimed
    assert "warning: every run of a commit has given the same value" in result.out  # said once it showed
    shown = cli("show", str(kept[0]["id"]), fixed.path, "--tag", "u")
    assert "the seed does not reach the script" in shown.out
    status = cli("status", fixed.path, "--tag", "u")
    assert "the seed does not reach the script" in status.out
    brief = cli("brief", fixed.path, "--tag", "u", "--agent", "claude").out
    assert "Every run of a commit has given the same value" in brief and "every difference is real" not in brief


def test_a_commit_that_drops_the_seed_constant_is_rejected(fixed: Repo, plan, cli) -> None:
    _name_the_seed(fixed)
    plan({"1": [["write", "train.py", FIXED.replace("SEED = 42\n", "").replace("(SEED)", "(1)")]]})
    assert cli("run", fixed.path, "--tag", "d", "--agent-command", AGENT, "--max-experiments", "1").code == 0
    row = ledger_rows(fixed.path, "d")[1]
    assert row["status"] == "rejected" and "no editable .py file assigns SEED" in row["reason"]


def test_a_seed_no_file_assigns_is_refused_before_anything_runs(fixed: Repo, cli) -> None:
    fixed.write("overnight.toml", CONFIG.format(judge='seed = "RANDOM_SEED"'))
    fixed.commit("wrong name")
    with pytest.raises(ConfigError, match=r"no editable \.py file assigns RANDOM_SEED"):
        Task.load(fixed.path).check_ready()
    result = cli("run", fixed.path, "--tag", "w", "--agent-command", AGENT, "--max-experiments", "1")
    assert result.code != 0 and "RANDOM_SEED" in result.err
    assert not (fixed.path / ".overnight" / "w").exists()


def test_assign_rewrites_module_level_assignments_only() -> None:
    text = (
        '"""Docs: SEED = 1 is the default."""\nSEED: int = int(\n    42\n)  # the seed\nX = 1\ndef f():\n    SEED = 3\n'
    )
    out = seeds.assign(text, "SEED", 7)
    assert out == '"""Docs: SEED = 1 is the default."""\nSEED: int = 7  # the seed\nX = 1\ndef f():\n    SEED = 3\n'
    assert seeds.assign("X = 1\n", "SEED", 7) is None
    assert seeds.assign("SEED = (\n", "SEED", 7) is None  # does not parse: nothing to rewrite


def test_survey_finds_what_seeds_a_script(tmp_path) -> None:
    (tmp_path / "train.py").write_text("import torch\nRANDOM_SEED = 0\ntorch.manual_seed(42)\n")
    (tmp_path / "other.py").write_text("import os\nSEED = int(os.environ.get('OVERNIGHT_SEED', 0))\n")
    found = seeds.survey(tmp_path, ["train.py"])
    assert not found.seeded and found.constants == (("train.py", "RANDOM_SEED"),)
    assert found.literals == (("train.py", 3, "manual_seed(42)"),)
    # beside a seed constant, a literal is most often a fixed data split: no advice to change it
    assert not any("manual_seed(42)" in line for line in found.advice())
    assert any("manual_seed(42)" in line for line in seeds.Survey((), (), found.literals).advice())
    assert seeds.survey(tmp_path, ["*.py"]).seeded
    assert seeds.start_note(tmp_path, ["train.py"], "", False) == ""  # other.py, run beside it, reads it
    (tmp_path / "other.py").unlink()
    note = seeds.start_note(tmp_path, ["train.py"], "", False)
    assert 'seed = "RANDOM_SEED"' in note and "manual_seed(42)" not in note
    assert seeds.start_note(tmp_path, ["train.py"], "RANDOM_SEED", False) == ""
    assert seeds.start_note(tmp_path, ["train.py"], "", True) == ""


def test_verify_gives_no_interval_to_runs_that_repeat_and_a_real_one_with_the_seed_named(
    fixed: Repo, plan, cli
) -> None:
    plan({"1": [["set", "train.py", "X", "5"], ["print", "Hypothesis: X to 5"]]})
    assert cli("run", fixed.path, "--tag", "v", "--agent-command", AGENT, "--max-experiments", "1").code == 0
    assert ledger_rows(fixed.path, "v")[1]["status"] == "keep"
    found = cli("verify", fixed.path, "--tag", "v", "--runs", "3")
    assert found.code == 0, found.err
    gain = next(line for line in found.out.splitlines() if line.startswith("gain at scale"))
    assert "no interval" in gain and "seed does not reach the script" in gain and "[" not in gain
    _name_the_seed(fixed)
    assert cli("run", fixed.path, "--tag", "w", "--agent-command", AGENT, "--max-experiments", "1").code == 0
    found = cli("verify", fixed.path, "--tag", "w", "--runs", "3")
    gain = next(line for line in found.out.splitlines() if line.startswith("gain at scale"))
    assert "no interval" not in gain and "[" in gain


def test_init_names_a_seed_constant_and_says_what_to_change_otherwise(repo: Repo, cli, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    repo.write("train.py", FIXED)
    result = cli("init", repo.path, "--run", "python train.py", "--editable", "train.py", "--metric", "score")
    assert result.code == 0, result.err
    assert 'wrote [judge] seed = "SEED"' in result.out
    config = Task.load(repo.path).config
    assert config.judge.seed == "SEED"
    assert "re-roll" in (repo.path / "program.md").read_text()
    other = repo.path / "other"
    other.mkdir()
    (other / "train.py").write_text("import torch\ntorch.manual_seed(42)\nprint('score: 1')\n")
    result = cli("init", other, "--run", "python train.py", "--editable", "train.py", "--metric", "score")
    assert result.code == 0 and "train.py:2 seeds a generator with a literal (manual_seed(42))" in result.out
    assert '# seed = "SEED"' in (other / "overnight.toml").read_text()
    assert Task.load(other).config.judge.seed == ""
