"""Harness overhead per experiment: overnight vs labloop, measured in the same run.

The task is as cheap as a task can be, so what is left is the harness itself:
the agent writes one line (`echo "score: <nanoseconds>" > value.txt`) and the
experiment prints it (`cat value.txt`). Both tools run the same two shell commands
on identical fresh git repositories.

Per-experiment time = (wall time of a run with N+1 experiments − wall time of a run
with 1 experiment) / N, each tool started as a real command line, so interpreter
start-up and one-off set-up cancel out. Rounds alternate between the tools and the
median is reported, because a shared machine's noise is larger than the difference
we measure; the ratio is computed within the same rounds.

    pip install -e '.[bench]'      # labloop from PyPI
    python benchmarks/overhead.py  # --experiments 50 --rounds 5
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _repo import arguments, git_repo

AGENT = 'echo "score: $(date +%N)" > value.txt'
EXPERIMENT = "cat value.txt"


def _template(root: Path) -> Path:
    config = f'[task]\nrun = "{EXPERIMENT}"\neditable = ["value.txt"]\nbudget_s = 10\n\n[metric]\nname = "score"\ngoal = "min"\n'
    files = {"value.txt": "score: 5\n", "overnight.toml": config, "program.md": "Lower the score.\n"}
    return git_repo(root / "template", files)


def _overnight(repo: Path, experiments: int) -> list[str]:
    return [
        sys.executable, "-m", "overnight", "run", str(repo), "--tag", "bench",
        "--agent-command", AGENT, "--max-experiments", str(experiments - 1),
    ]  # fmt: skip


def _labloop(repo: Path, experiments: int) -> list[str]:
    exe = shutil.which("labloop") or str(Path(sys.executable).parent / "labloop")
    return [
        exe, "run", "--run", EXPERIMENT, "--metric", "score", "--propose", AGENT,
        "--trials", str(experiments), "--sandbox", "none", "--budget", "10", "--give-up-after", "0",
    ]  # fmt: skip


TOOLS = {"overnight": _overnight, "labloop": _labloop}


def _wall(tool: str, template: Path, scratch: Path, experiments: int) -> float:
    repo = scratch / f"{tool}-{experiments}-{time.monotonic_ns()}"
    shutil.copytree(template, repo)
    command = TOOLS[tool](repo, experiments)
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=repo, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{tool} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    shutil.rmtree(repo, ignore_errors=True)
    return wall


def main() -> None:
    args = arguments(__doc__, experiments=50, rounds=5)
    if not (shutil.which("labloop") or (Path(sys.executable).parent / "labloop").exists()):
        raise SystemExit("labloop is not installed: pip install -e '.[bench]' (or pip install labloop)")

    per_experiment: dict[str, list[float]] = {tool: [] for tool in TOOLS}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        template = _template(scratch)
        for round_ in range(args.rounds):
            for tool in TOOLS if round_ % 2 == 0 else reversed(list(TOOLS)):
                one = _wall(tool, template, scratch, 1)
                many = _wall(tool, template, scratch, args.experiments + 1)
                per_experiment[tool].append((many - one) / args.experiments)
            print(
                f"round {round_ + 1}: " + ", ".join(f"{t} {1000 * v[-1]:.1f} ms" for t, v in per_experiment.items()),
                flush=True,
            )
    ours = statistics.median(per_experiment["overnight"])
    theirs = statistics.median(per_experiment["labloop"])
    ratios = [b / a for a, b in zip(per_experiment["overnight"], per_experiment["labloop"], strict=True)]
    print()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"experiments per run: {args.experiments}, rounds: {args.rounds} (medians)")
    print("| tool | harness time per experiment |")
    print("|---|---|")
    print(f"| overnight | {1000 * ours:.1f} ms |")
    print(f"| labloop | {1000 * theirs:.1f} ms |")
    print(f"labloop / overnight time per experiment: median {statistics.median(ratios):.2f}x "
          f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})")  # fmt: skip
    print(f"target < 100 ms per experiment: {'met' if ours < 0.1 else 'NOT met'}")


if __name__ == "__main__":
    main()
