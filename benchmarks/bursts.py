"""The judge on a real timing task on a busy machine: real `overnight run`s while a CPU hog switches on and off.

The task is a pure-Python workload (a loop of string hashing, `bench.py`), whose metric is
the CPU time it takes (`cpu_ms`, from time.process_time), gated by its own unit test. An
agent (a shell command) proposes, in order, three no-ops (a comment added) and then a real
25% speed-up (ROUNDS × 0.75), four times over: 12 no-ops and 4 speed-ups per run. Meanwhile
a hog process takes one core for 5–15 s, leaves it for 5–20 s, and so on: on a shared
2-core machine that is what makes timing noise come in bursts.

Reported: no-ops kept (target: at most 1 of 15), speed-ups kept (target: every one), runs
per proposal, the share of runs taken while other programs used more than a quarter of the
machine, and the runs set aside as disturbed.

    python benchmarks/bursts.py  # --runs 3 --seed 0 --max-repeats 0 (0: the [judge] default)
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _repo import arguments, git_repo

BENCH = """\
import hashlib, time
ROUNDS = 1500000


def work(rounds):
    digest = b""
    for i in range(rounds):
        digest = hashlib.sha256(digest + str(i).encode()).digest()
    return digest


if __name__ == "__main__":
    started = time.process_time()
    work(ROUNDS)
    print(f"cpu_ms: {1000 * (time.process_time() - started):.2f}")
"""
TEST = "import bench\nassert len(bench.work(10)) == 32\n"
CONFIG = """\
[task]
run = "{python} bench.py"
gate = "{python} test_bench.py"
editable = ["bench.py"]
budget_s = 5

[metric]
name = "cpu_ms"
goal = "min"

[judge]
rel_delta = 0.02
{max_repeats}"""
# Every 4th proposal a real 25% speed-up; the others add a comment (a no-op).
AGENT = """\
import os, re
n = int(os.environ["OVERNIGHT_EXPERIMENT_ID"])
text = open("bench.py").read()
if n % 4 == 0:
    rounds = int(re.search(r"^ROUNDS = (\\d+)", text, re.M).group(1))
    text = re.sub(r"^ROUNDS = \\d+", f"ROUNDS = {int(rounds * 0.75)}", text, flags=re.M) + f"# speed-up {n}\\n"
    print("Hypothesis: 25% fewer rounds (a real speed-up)")
else:
    text += f"# note {n}\\n"
    print("Hypothesis: a comment (a no-op)")
open("bench.py", "w").write(text)
"""


class Hog:
    """A CPU-bound process switched on and off at random, until stopped."""

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.stop, self.proc = rng, threading.Event(), None
        self.thread = threading.Thread(target=self._cycle, daemon=True)

    def _cycle(self) -> None:
        while not self.stop.wait(self.rng.uniform(5, 20)):
            self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            self.stop.wait(self.rng.uniform(5, 15))
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def __enter__(self) -> Hog:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def one_run(folder: Path, seed: int, proposals: int, max_repeats: int) -> dict[str, object]:
    files = {"bench.py": BENCH, "test_bench.py": TEST, "overnight.toml": CONFIG.format(python=sys.executable, max_repeats=f"max_repeats = {max_repeats}\n" if max_repeats else ""),
             "program.md": "Make it faster.\n"}  # fmt: skip
    repo = git_repo(folder / f"run{seed}", files)
    (folder / "agent.py").write_text(AGENT)
    command = [sys.executable, "-m", "overnight", "run", str(repo), "--tag", "b", "--agent-command",
               f"{sys.executable} {folder / 'agent.py'}", "--max-experiments", str(proposals)]  # fmt: skip
    with Hog(random.Random(seed)):
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OVERNIGHT_PLAIN": "1"})
    if done.returncode != 0:
        raise SystemExit(f"overnight failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    log = subprocess.run([sys.executable, "-m", "overnight", "log", str(repo), "--tag", "b", "--format", "json"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    rows = json.loads(log)
    import sqlite3

    db = sqlite3.connect(repo / ".overnight" / "b" / "ledger.db")
    measured = db.execute("SELECT kind, value, contention, experiment FROM measurements ORDER BY rowid").fetchall()
    db.close()
    return {"rows": rows, "measured": measured}


def runs_of(measured: list[tuple[str, float, float | None, int]], experiment: int) -> str:
    """An experiment's runs in the order taken: value, the machine's share used by others, set aside or not."""
    return ", ".join(
        f"{value:.0f}"
        + (f" ({contention:.0%})" if contention is not None else "")
        + ("*" if kind == "disturbed" else "")
        for kind, value, contention, of in measured
        if of == experiment
    )


def main() -> None:
    args = arguments(__doc__, runs=3, seed=0, proposals=16, max_repeats=0)
    noops = speedups = kept_noops = kept_speedups = runs = aside = contended = 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            result = one_run(Path(tmp), args.seed + run, args.proposals, args.max_repeats)
            rows, measured = result["rows"], result["measured"]
            assert isinstance(rows, list) and isinstance(measured, list)
            for row in rows[1:]:
                speedup = "speed-up" in row["hypothesis"]
                noops += not speedup
                speedups += speedup
                kept_noops += row["status"] == "keep" and not speedup
                kept_speedups += row["status"] == "keep" and speedup
            runs += len(measured)
            aside += sum(1 for kind, _, _, _ in measured if kind == "disturbed")
            contended += sum(1 for _, _, contention, _ in measured if (contention or 0) > 0.25)
            print(f"run {run + 1}: " + ", ".join(f"#{r['id']} {r['status']}" for r in rows[1:]), flush=True)
            for row in rows[1:]:  # the misses, and why
                speedup = "speed-up" in row["hypothesis"]
                if speedup != (row["status"] == "keep"):
                    print(f"  #{row['id']} ({'speed-up' if speedup else 'no-op'}) {row['status']}: {row['reason']}")
                    reference = next((r["id"] for r in rows if r["commit"] == row["parent"]), None)
                    print(f"    runs: {runs_of(measured, row['id'])}; its reference #{reference}: "
                          f"{runs_of(measured, reference) if reference is not None else '?'}")  # fmt: skip
    print()
    print(f"{args.runs} runs of {args.proposals} proposals, {time.monotonic() - started:.0f} s, {os.cpu_count()} cores")
    print(f"no-ops kept: {kept_noops} of {noops}   (target: at most 1 of 15)")
    print(f"25% speed-ups kept: {kept_speedups} of {speedups}   (target: every one)")
    print(f"measurements: {runs} ({runs / (noops + speedups):.2f} per proposal); {contended} taken while other "
          f"programs used over a quarter of the machine; {aside} set aside as disturbed")  # fmt: skip


if __name__ == "__main__":
    main()
