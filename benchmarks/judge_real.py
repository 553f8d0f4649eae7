"""The judge's simulation checked against real `overnight run`s: the same tasks, real git, processes and ledger.

The task's metric is a true value plus Gaussian noise (σ = 1) that seeds do not control:
`measure.py` prints `score: TRUTH + gauss(0, 1)`, its randomness from the operating system,
goal = min, default `[judge]`. An agent (a shell command) proposes, by experiment number:

* `noops`: a comment added to `value.py` every time (60 proposals);
* `every 4th`: every 4th proposal lowers TRUTH by 2 (a real 2σ improvement), the others add
  a comment (40 proposals: the best possible end is 20σ below the start).

Reported per case, as `benchmarks/judge.py` reports the simulation of the same case: no-ops
kept, real wins kept, measurements per proposal, the final true improvement (the TRUTH on the
run branch at the end, against 100), and runs that stalled (ended under a third of the best
possible). Compare with `python benchmarks/judge.py --cases "noops,every 4th"`.

    python benchmarks/judge_real.py  # --runs 10 --noise-runs 0 --cases "noops,every 4th"
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _repo import arguments, git_repo

MEASURE = """\
import random
from value import TRUTH

print(f"score: {TRUTH + random.SystemRandom().gauss(0, 1):.4f}")
"""
CONFIG = """\
[task]
run = "{python} measure.py"
editable = ["value.py"]
budget_s = 5

[metric]
name = "score"
goal = "min"
{judge}"""
# Every 4th proposal lowers TRUTH by 2 (when EVERY is 4); the others add a comment.
AGENT = """\
import os, re
n, every = int(os.environ["OVERNIGHT_EXPERIMENT_ID"]), {every}
text = open("value.py").read()
if every and n % every == 0:
    truth = float(re.search(r"^TRUTH = (\\S+)", text, re.M).group(1))
    text = re.sub(r"^TRUTH = \\S+", f"TRUTH = {{truth - 2}}", text, flags=re.M) + f"# win {{n}}\\n"
    print("Hypothesis: TRUTH lower by 2 (a real win)")
else:
    text += f"# note {{n}}\\n"
    print("Hypothesis: a comment (a no-op)")
open("value.py", "w").write(text)
"""
CASES = {"noops": (60, 0), "every 4th": (40, 4)}  # proposals, every how many a win


def one_run(folder: Path, name: str, every: int, proposals: int, noise_runs: int) -> dict[str, object]:
    judge = f"\n[judge]\nnoise_runs = {noise_runs}\n" if noise_runs else ""
    files = {"value.py": "TRUTH = 100.0\n", "measure.py": MEASURE, "program.md": "Lower the score.\n",
             "overnight.toml": CONFIG.format(python=sys.executable, judge=judge)}  # fmt: skip
    repo = git_repo(folder / name, files)
    agent = folder / f"agent{every}.py"
    agent.write_text(AGENT.format(every=every))
    command = [sys.executable, "-m", "overnight", "run", str(repo), "--tag", "j", "--agent-command",
               f"{sys.executable} {agent}", "--max-experiments", str(proposals)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OVERNIGHT_PLAIN": "1"})
    if done.returncode != 0:
        raise SystemExit(f"overnight failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    log = subprocess.run([sys.executable, "-m", "overnight", "log", str(repo), "--tag", "j", "--format", "json"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    best = subprocess.run(["git", "show", "overnight/j:value.py"], cwd=repo, capture_output=True, text=True, check=True)
    truth = float(re.search(r"^TRUTH = (\S+)", best.stdout, re.M).group(1))  # type: ignore[union-attr]
    db = sqlite3.connect(repo / ".overnight" / "j" / "ledger.db")
    (measured,) = db.execute("SELECT count(*) FROM measurements").fetchone()  # every run, as judge.py counts them
    db.close()
    return {"rows": json.loads(log), "truth": truth, "measured": measured}


def main() -> None:
    args = arguments(__doc__, runs=10, noise_runs=0, cases=",".join(CASES))
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases.split(","):
            proposals, every = CASES[case]
            started = time.monotonic()
            noops = wins = kept_noops = kept_wins = measured = stalled = 0
            gains: list[float] = []
            for run in range(args.runs):
                result = one_run(Path(tmp), f"{case.replace(' ', '')}{run}", every, proposals, args.noise_runs)
                rows = result["rows"]
                assert isinstance(rows, list)
                for row in rows[1:]:
                    win = "real win" in row["hypothesis"]
                    noops, wins = noops + (not win), wins + win
                    kept_noops += row["status"] == "keep" and not win
                    kept_wins += row["status"] == "keep" and win
                measured += int(result["measured"])  # type: ignore[call-overload]
                gain = (100.0 - float(result["truth"])) / 1.0  # in σ
                gains.append(gain)
                possible = 2.0 * (proposals // every) if every else 0.0
                stalled += bool(possible) and gain < possible / 3
            print(f"{case}: {args.runs} real runs of {proposals} proposals (noise_runs {args.noise_runs}), "
                  f"{time.monotonic() - started:.0f} s")  # fmt: skip
            print(f"  no-ops kept: {kept_noops} of {noops} ({100 * kept_noops / max(noops, 1):.1f}%)")
            if wins:
                print(f"  real 2σ wins kept: {kept_wins} of {wins} ({100 * kept_wins / wins:.1f}%)")
                print(f"  final true gain: {sum(gains) / len(gains):.2f}σ (best possible {2 * (proposals // every)}σ)"
                      f"; stalled: {stalled} of {args.runs}")  # fmt: skip
                print(
                    f"  per 100 runs: {100 * sum(gains) / max(measured, 1):.2f}σ (every run counted, the baseline's too)"
                )
            print(f"  measurements per proposal: {measured / max(noops + wins, 1):.2f}", flush=True)


if __name__ == "__main__":
    main()
