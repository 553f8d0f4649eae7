"""Throughput of parallel workers: slot utilization with look-ahead, and scaling with workers.

Each experiment sleeps EXPERIMENT_S and prints a constant metric; the agent (a command)
sleeps AGENT_S and changes a constant the metric ignores, so every experiment is
measured once and discarded: what is measured is scheduling, not the judge. Each run
is a real `overnight run` in a fresh repository; every experiment run notes its start
and end, from which utilization is computed.

1. Utilization: 1 slot, the agent's latency half the experiment's duration. A serial
   loop (1 worker) leaves the slot idle while the agent thinks (2/3 at best); with a
   second worker thinking ahead (`--workers 2 --slots 1`) the slot should stay busy.
2. Scaling: 1, 2 and 4 workers (slots = workers): experiments per minute, relative to 1.

    python benchmarks/throughput.py  # --experiments 12 --experiment-s 1.0
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TRAIN = """import json, os, time
IGNORED = 0
start = time.time()
time.sleep(float(os.environ["BENCH_EXPERIMENT_S"]))
with open(os.environ["BENCH_SPANS"], "a") as fh:
    fh.write(json.dumps([start, time.time()]) + "\\n")
print("score: 1.0")
"""

AGENT = (
    "python3 -c \"import os, re, time; time.sleep(float(os.environ['BENCH_AGENT_S'])); "
    "p = 'train.py'; s = open(p).read(); "
    "open(p, 'w').write(re.sub(r'^IGNORED = .*$', 'IGNORED = ' + os.environ['OVERNIGHT_EXPERIMENT_ID'], s, flags=re.M)); "
    "print('Hypothesis: change nothing that matters')\""
)


def _repo(root: Path, name: str) -> Path:
    repo = root / name
    repo.mkdir()
    (repo / "train.py").write_text(TRAIN)
    (repo / "program.md").write_text("bench\n")
    (repo / "overnight.toml").write_text(
        '[task]\nrun = "python3 train.py"\neditable = ["train.py"]\nbudget_s = 30\n'
        '[metric]\nname = "score"\ngoal = "min"\n'
    )
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "t"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return repo


def _run(root: Path, name: str, workers: int, slots: int, args: argparse.Namespace) -> list[tuple[float, float]]:
    repo = _repo(root, name)
    spans = root / f"{name}.jsonl"
    env = {
        **os.environ,
        "BENCH_SPANS": str(spans),
        "BENCH_EXPERIMENT_S": str(args.experiment_s),
        "BENCH_AGENT_S": str(args.experiment_s * args.agent_ratio),
    }
    command = [
        sys.executable, "-m", "overnight", "run", str(repo), "--tag", "b", "--agent-command", AGENT,
        "--workers", str(workers), "--slots", str(slots), "--max-experiments", str(args.experiments),
        "--give-up-after", "0",
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, env=env)
    return [tuple(json.loads(line)) for line in spans.read_text().splitlines()][1:]  # the baseline is not counted


def _busy(spans: list[tuple[float, float]]) -> float:
    """Fraction of the time from the first experiment's start to the last one's end that a slot was running."""
    start, end = min(s for s, _ in spans), max(e for _, e in spans)
    return sum(e - s for s, e in spans) / (end - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", type=int, default=12)
    parser.add_argument("--experiment-s", type=float, default=1.0)
    parser.add_argument("--agent-ratio", type=float, default=0.5, help="agent latency / experiment duration")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"{args.experiments} experiments of {args.experiment_s:g} s, agent latency {args.agent_ratio:g}× that\n")
        print("| 1 slot | slot busy |")
        print("|---|---|")
        for workers in (1, 2):
            spans = _run(root, f"u{workers}", workers, 1, args)
            print(f"| {workers} worker{'s' if workers > 1 else ''} | {_busy(spans):.1%} |", flush=True)
        print("\n| workers = slots | experiments per minute | relative to 1 |")
        print("|---|---|---|")
        base = 0.0
        for workers in (1, 2, 4):
            spans = _run(root, f"s{workers}", workers, workers, args)
            rate = 60 * len(spans) / (max(e for _, e in spans) - min(s for s, _ in spans))
            base = base or rate
            print(f"| {workers} | {rate:.1f} | {rate / base:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
