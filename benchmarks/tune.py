"""The tune agent on two tasks, each a real `overnight run` on a fresh git repository.

quickstart: the examples/quickstart task (fit a cubic's four coefficients, all 0 at the
start; lower mse is better). The tune agent (`--agent tune`, one run per seed) against
the example's own agent, `propose.py`, which nudges one coefficient at random by a step
that shrinks as changes are kept. The coefficients start at 0, which the tune agent does
not search unless given a range: the example's overnight.toml gives each [-5, 5]
(`--span S` gives [-S, S] instead).
`propose.py` draws from a generator seeded by the experiment id, so its run is the same
for every seed: it runs once.

known: a task whose optimum is known: three constants (a learning rate on a log scale, an
integer width, a momentum) and a loss that is 0 exactly at LEARNING_RATE = 0.01, WIDTH = 64,
MOMENTUM = 0.9; a width over 200 crashes. The tune agent with its TPE sampler against the
same agent with Optuna's random sampler: same search space, seeds and budget.

We report the best metric after 10, 20 and 30 experiments (median over seeds). `--vary` is
the agent's `[agent.tune] vary` (constants changed per experiment, at most; 0: all).

    python benchmarks/tune.py  # --experiments 30 --seeds 5 --span 0 --task 0 (0: both, 1: quickstart, 2: known) --vary 2
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _repo import arguments, git_repo
from overnight.cli import demo
from overnight.config import TuneSection

TRAIN = """import math

LEARNING_RATE = 0.003
WIDTH = 16
MOMENTUM = 0.5
if WIDTH > 200:
    raise SystemExit("out of memory")

loss = (math.log10(LEARNING_RATE) + 2) ** 2 + (math.log2(WIDTH) - 6) ** 2 / 4 + (MOMENTUM - 0.9) ** 2
print(f"loss: {loss:.6f}")
"""


def _curve(repo: Path, experiments: int, *extra: str) -> list[float]:
    """Run `overnight run` on ``repo``; the best metric after each experiment."""
    run = [sys.executable, "-m", "overnight", "run", str(repo), "--tag", "b", "--max-experiments", str(experiments)]
    done = subprocess.run([*run, *extra], capture_output=True, text=True)
    if done.returncode != 0:  # e.g. --span 0: the tune agent leaves the zeros of quickstart alone
        raise SystemExit(f"overnight run {repo.name} failed:\n{done.stderr}")
    log = subprocess.run([sys.executable, "-m", "overnight", "log", str(repo), "--format", "json"],
                         check=True, capture_output=True, text=True)  # fmt: skip
    rows = json.loads(log.stdout)
    best, curve = rows[0]["metric"], []
    for row in rows[1:]:
        if row["status"] == "keep":
            best = row["metric"]
        curve.append(best)
    return curve + [best] * (experiments - len(curve))  # a run that stopped early keeps its best


def _known(root: Path, sampler: str, seed: int, experiments: int, vary: int) -> list[float]:
    config = (
        f'[task]\nrun = "{sys.executable} train.py"\neditable = ["train.py"]\nbudget_s = 5\n'
        f'[metric]\nname = "loss"\ngoal = "min"\n'
        f'[agent]\nkind = "tune"\n[agent.tune]\nsampler = "{sampler}"\nseed = {seed}\nvary = {vary}\n'
    )
    files = {"train.py": TRAIN, "program.md": "Minimize the loss.\n", "overnight.toml": config}
    return _curve(git_repo(root / f"{sampler}-{seed}", files), experiments)


def _quickstart(root: Path, agent: str, seed: int, experiments: int, span: float, vary: int) -> list[float]:
    repo = demo.prepare("quickstart", root / f"quickstart-{agent}-{seed}")
    if agent == "tune":
        config = repo / "overnight.toml"
        text = config.read_text().replace("[agent.tune]\n", f"[agent.tune]\nseed = {seed}\nvary = {vary}\n")
        if span:
            ranges = ", ".join(f"{n} = [{-span:g}, {span:g}]" for n in "ABCD")
            text = re.sub(r"^ranges = .*$", f"ranges = {{ {ranges} }}", text, flags=re.M)
        config.write_text(text)
        subprocess.run(["git", "commit", "-q", "-am", "tune settings"], cwd=repo, check=True, capture_output=True)
        return _curve(repo, experiments, "--agent", "tune")
    return _curve(repo, experiments)


def _table(title: str, curves: dict[str, list[list[float]]], experiments: int, seeds: int) -> None:
    marks = [m for m in (10, 20, 30) if m <= experiments] or [experiments]
    print(f"\n{title}: best found (median of {seeds} seeds)")
    print("| agent | " + " | ".join(f"after {m}" for m in marks) + " |")
    print("|---|" + "---|" * len(marks))
    for name, runs in curves.items():
        print(f"| {name} | " + " | ".join(f"{statistics.median(r[m - 1] for r in runs):.4f}" for m in marks) + " |")


def main() -> None:
    args = arguments(__doc__, experiments=30, seeds=5, span=0.0, task=0, vary=TuneSection().vary)
    print(f"[agent.tune] vary = {args.vary}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.task in (0, 1):
            quick: dict[str, list[list[float]]] = {"tune": [], "propose.py (random nudge)": []}
            quick["propose.py (random nudge)"].append(
                _quickstart(root, "nudge", 0, args.experiments, args.span, args.vary)
            )
            print(f"quickstart propose.py: {quick['propose.py (random nudge)'][0][-1]:.4f}", flush=True)
            for seed in range(args.seeds):
                quick["tune"].append(_quickstart(root, "tune", seed, args.experiments, args.span, args.vary))
                print(f"quickstart seed {seed}: tune {quick['tune'][-1][-1]:.4f}", flush=True)
            span = f"[-{args.span:g}, {args.span:g}]" if args.span else "the example's, [-5, 5]"
            _table(f"quickstart (mse; baseline 3.0420; ranges {span})", quick, args.experiments, args.seeds)
            nudge = quick["propose.py (random nudge)"][0][-1]
            ahead = sum(r[-1] < nudge for r in quick["tune"])
            print(f"tune ended ahead of propose.py in {ahead} of {args.seeds} seeds")
        if args.task in (0, 2):
            known: dict[str, list[list[float]]] = {"tpe": [], "random": []}
            for seed in range(args.seeds):
                for sampler in known:
                    known[sampler].append(_known(root, sampler, seed, args.experiments, args.vary))
                print(f"known seed {seed}: " + ", ".join(f"{s} {c[-1][-1]:.4f}" for s, c in known.items()), flush=True)
            _table("known optimum (loss; baseline 1.4334)", known, args.experiments, args.seeds)
            ahead = sum(t[-1] < r[-1] for t, r in zip(known["tpe"], known["random"], strict=True))
            print(f"TPE ended ahead of random search in {ahead} of {args.seeds} seeds")


if __name__ == "__main__":
    main()
