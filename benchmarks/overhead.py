"""Harness overhead per experiment: overnight vs labloop, measured in the same run.

The task is as cheap as a task can be, so what is left is the harness itself:
the agent writes one line (`echo "score: <nanoseconds>" > value.txt`) and the
experiment prints it (`cat value.txt`). Both tools run the same two shell commands
on identical fresh git repositories, and both measure a baseline first (overnight
does it by itself; labloop with `labloop baseline`, its ledger kept outside the
repository so the tree stays clean).

Per-experiment time = (wall time of baseline + N+1 experiments − wall time of
baseline + 1 experiment) / N, each tool started as real command lines, so interpreter
start-up and one-off set-up cancel out. ``--at K`` measures experiments K+2 to K+N+1
instead (late in a night: (wall of K+N+1 − wall of K+1) / N), where what a tool does per
experiment over its whole history shows. labloop runs twice: unsandboxed
(`--sandbox none`) and in its default mode (`--sandbox auto`, which confines the
proposer with bubblewrap when bwrap is installed). Rounds alternate the order of the
tools, and medians are reported, because a shared machine's noise is larger than the
differences we measure; ratios are computed within the same rounds.

    pip install -e '.[bench]'      # labloop from PyPI
    python benchmarks/overhead.py  # --experiments 50 --rounds 5
    python benchmarks/overhead.py --against ../main/src  # and overnight from another checkout, same rounds
    python benchmarks/overhead.py --at 500 --experiments 100 --rounds 3  # late in a night

The CPU column is the CPU time of each tool's processes and all they started (the commands
included), per experiment, computed the same way: on a machine that other programs keep busy,
wall time follows it.
"""

from __future__ import annotations

import os
import resource
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


def _other(src: str):  # type: ignore[no-untyped-def]
    """overnight from another checkout's ``src`` folder (``--against``): its commands, run with that PYTHONPATH."""

    def commands(repo: Path, experiments: int) -> list[list[str]]:
        return [["env", f"PYTHONPATH={src}", *_overnight(repo, experiments)[0]]]

    return commands


def _overnight(repo: Path, experiments: int) -> list[list[str]]:
    return [[
        sys.executable, "-m", "overnight", "run", str(repo), "--tag", "bench",
        "--agent-command", AGENT, "--max-experiments", str(experiments),
    ]]  # fmt: skip


def _labloop(sandbox: str):  # type: ignore[no-untyped-def]
    def commands(repo: Path, experiments: int) -> list[list[str]]:
        exe = shutil.which("labloop") or str(Path(sys.executable).parent / "labloop")
        ledger = str(repo.parent / f"{repo.name}.labloop.jsonl")
        common = ["--run", EXPERIMENT, "--metric", "score", "--budget", "10", "--ledger", ledger]
        return [
            [exe, "baseline", *common],
            [exe, "run", *common, "--propose", AGENT, "--trials", str(experiments), "--sandbox", sandbox,
             "--give-up-after", "0"],
        ]  # fmt: skip

    return commands


TOOLS = {"overnight": _overnight, "labloop": _labloop("none"), "labloop (default: sandbox auto)": _labloop("auto")}


CPU: dict[str, list[float]] = {}  # tool → CPU seconds of each of its runs, its processes and theirs


def _env() -> dict[str, str]:
    """The tools' environment. They run in the task's folder, where a relative PYTHONPATH names nothing (and
    `python -m overnight` would run the installed overnight, not the checkout's): it is made absolute."""
    env = {**os.environ, "OVERNIGHT_PLAIN": "1"}
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep) if p)
    return env


def _wall(tool: str, template: Path, scratch: Path, experiments: int) -> float:
    repo = scratch / f"{tool.split()[0]}-{experiments}-{time.monotonic_ns()}"
    shutil.copytree(template, repo)
    env = _env()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    for command in TOOLS[tool](repo, experiments):
        proc = subprocess.run(command, cwd=repo, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"{tool} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.setdefault(tool, []).append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    shutil.rmtree(repo, ignore_errors=True)
    return wall


def main() -> None:
    args = arguments(__doc__, experiments=50, rounds=5, against="", at=0)
    if args.against:
        TOOLS["overnight at " + args.against] = _other(os.path.abspath(args.against))
    measured = subprocess.run([sys.executable, "-c", "import overnight; print(overnight.__file__)"],
                              capture_output=True, text=True, cwd=tempfile.gettempdir(), env=_env(), check=False)  # fmt: skip
    print(f"overnight measured: {measured.stdout.strip() or measured.stderr.strip()}", flush=True)
    if not (shutil.which("labloop") or (Path(sys.executable).parent / "labloop").exists()):
        raise SystemExit("labloop is not installed: pip install -e '.[bench]' (or pip install labloop)")
    if not shutil.which("bwrap"):
        print("note: bwrap is not installed, so labloop's default (sandbox auto) runs unsandboxed", flush=True)

    per_experiment: dict[str, list[float]] = {tool: [] for tool in TOOLS}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        template = _template(scratch)
        for round_ in range(args.rounds):
            order = list(TOOLS) if round_ % 2 == 0 else list(reversed(TOOLS))
            for tool in order:
                one = _wall(tool, template, scratch, args.at + 1)
                many = _wall(tool, template, scratch, args.at + args.experiments + 1)
                per_experiment[tool].append((many - one) / args.experiments)
                cpu_many, cpu_one = CPU[tool][-1], CPU[tool][-2]
                CPU[tool].append((cpu_many - cpu_one) / args.experiments)
            print(
                f"round {round_ + 1}: " + ", ".join(f"{t} {1000 * v[-1]:.1f} ms" for t, v in per_experiment.items()),
                flush=True,
            )
    ours = per_experiment["overnight"]
    print()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, load {os.getloadavg()[0]:.2f}")
    print(f"experiments measured: {args.at + 2} to {args.at + args.experiments + 1} after a baseline, "
          f"rounds: {args.rounds} (medians)")  # fmt: skip
    print("| tool | harness time per experiment | overnight's time / this tool's (median of rounds) "
          "| CPU per experiment, all its processes |")  # fmt: skip
    print("|---|---|---|---|")
    for tool, times in per_experiment.items():
        ratios = [a / b for a, b in zip(ours, times, strict=True)]
        cpu = CPU[tool][2::3]  # each round: the short run, the long run, the difference per experiment
        print(f"| {tool} | {1000 * statistics.median(times):.1f} ms | {statistics.median(ratios):.2f}× "
              f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)}) | {1000 * statistics.median(cpu):.1f} ms |")  # fmt: skip
    median = statistics.median(ours)
    labloop = statistics.median(a / b for a, b in zip(ours, per_experiment["labloop"], strict=True))
    if args.at:  # the targets are for the start of a night
        return
    print(f"target ≤ 25 ms per experiment: {'met' if median <= 0.025 else 'NOT met'} ({1000 * median:.1f} ms)")
    print(f"target ≤ 0.8× labloop's (unsandboxed) time: {'met' if labloop <= 0.8 else 'NOT met'} ({labloop:.2f}×)")


if __name__ == "__main__":
    main()
