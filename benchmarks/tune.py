"""The tune agent (Optuna TPE) against random search on the same budget.

The task has a known optimum: three constants (a learning rate on a log scale, an
integer width, a momentum) and a loss that is 0 exactly at LEARNING_RATE = 0.01,
WIDTH = 64, MOMENTUM = 0.9; a width over 200 crashes. Both samplers get the same
search space (the tune agent's defaults), the same seeds and the same number of
experiments; each run is a real `overnight run` on a fresh git repository. We report
the best loss found after 10, 20 and 30 experiments (median over seeds), and in how
many seeds TPE ended ahead. `--vary` is the agent's `[agent.tune] vary` for both
samplers (constants changed per experiment, at most; 0: all of them); the default is
the agent's own.

    python benchmarks/tune.py  # --experiments 30 --seeds 5 --vary 2
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _repo import arguments, git_repo
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


def _run(root: Path, sampler: str, seed: int, experiments: int, vary: int) -> list[float]:
    config = (
        f'[task]\nrun = "{sys.executable} train.py"\neditable = ["train.py"]\nbudget_s = 5\n'
        f'[metric]\nname = "loss"\ngoal = "min"\n'
        f'[agent]\nkind = "tune"\n[agent.tune]\nsampler = "{sampler}"\nseed = {seed}\nvary = {vary}\n'
    )
    files = {"train.py": TRAIN, "program.md": "Minimize the loss.\n", "overnight.toml": config}
    repo = git_repo(root / f"{sampler}-{seed}", files)
    run = [sys.executable, "-m", "overnight", "run", str(repo), "--tag", "b", "--max-experiments", str(experiments)]
    subprocess.run(run, check=True, capture_output=True)
    log = subprocess.run([sys.executable, "-m", "overnight", "log", str(repo), "--format", "json"],
                         check=True, capture_output=True, text=True)  # fmt: skip
    rows = json.loads(log.stdout)
    best, curve = rows[0]["metric"], []
    for row in rows[1:]:
        if row["status"] == "keep":
            best = row["metric"]
        curve.append(best)
    return curve


def main() -> None:
    args = arguments(__doc__, experiments=30, seeds=5, vary=TuneSection().vary)
    print(f"[agent.tune] vary = {args.vary}", flush=True)
    curves: dict[str, list[list[float]]] = {"tpe": [], "random": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for sampler in curves:
                curves[sampler].append(_run(Path(tmp), sampler, seed, args.experiments, args.vary))
            print(f"seed {seed}: " + ", ".join(f"{s} {c[-1][-1]:.4f}" for s, c in curves.items()), flush=True)
    marks = [m for m in (10, 20, 30) if m <= args.experiments]
    print(f"\nbaseline loss 1.4334; best loss found (median of {args.seeds} seeds):")
    print("| sampler | " + " | ".join(f"after {m}" for m in marks) + " |")
    print("|---|" + "---|" * len(marks))
    for sampler, runs in curves.items():
        print(f"| {sampler} | " + " | ".join(f"{statistics.median(r[m - 1] for r in runs):.4f}" for m in marks) + " |")
    ahead = sum(t[-1] < r[-1] for t, r in zip(curves["tpe"], curves["random"], strict=True))
    print(f"TPE ended ahead of random search in {ahead} of {args.seeds} seeds")


if __name__ == "__main__":
    main()
