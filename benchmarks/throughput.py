"""Throughput of parallel workers: slot utilization with look-ahead, and scaling with workers.

Each experiment sleeps EXPERIMENT_S and prints a constant metric; the agent (a command)
sleeps AGENT_S and changes a constant the metric ignores, so every experiment is
measured once and discarded: what is measured is scheduling, not the judge. Each run
is a real `overnight run` in a fresh repository; every experiment run notes its start
and end, from which utilization is computed.

Both measures count from the end of the baseline (the first experiment run, measured
alone before the workers start) to the end of the last experiment: the workers'
first proposals are inside that window, as every later round's are. (Counting from the
first experiment's start would leave one agent latency out, which flatters more
workers.) The scaling table also gives the rate over the whole `overnight run`
command's wall time, which adds the interpreter's start, the baseline and the clean-up.

1. Utilization: 1 slot, the agent's latency half the experiment's duration. A serial
   loop (1 worker) leaves the slot idle while the agent thinks (2/3 at best); with a
   second worker thinking ahead (`--workers 2 --slots 1`) the slot should stay busy.
2. Scaling: 1, 2 and 4 workers (slots = workers, or --workers): experiments per minute, relative to 1.
3. The controller's watch: the CPU the controller spends watching WATCHED commands that run
   at once (each one's processes found every 0.25 s for its memory and its end), the way it
   finds them now (the command's cgroup; without one, a look at every process shared by the
   commands) against the way it did before (every process of the machine read again for each
   command), with and without cgroups, measured in one run: CPU seconds per command-second,
   and the ratio to before.

    python benchmarks/throughput.py  # --experiments 12 --experiment-s 1.0
    python benchmarks/throughput.py --watch-only  # just 3
    python benchmarks/throughput.py --scaling-only --workers 1,4,8,16 --experiments 64 --experiment-s 2  # just 2
    python benchmarks/throughput.py --scaling-only --executor ray --workers 1,4,8,16 --experiments 64 --experiment-s 2

With `--executor ray` the experiments run on a two-node Ray cluster this script starts on the machine
(`ray start`, each node told it has half of the largest worker count in CPUs, as the experiments only
sleep) and stops at the end; each `overnight run` joins it with `--ray-address`, so the nodes' Ray
workers are warm after the first run, as a night's are after its first minutes.

The scaling table also gives the controller's own CPU (the `overnight run` process, all its
threads, not the commands it starts) per experiment and per second of the run: the harness's
share of a core. The experiment and agent commands are Python processes, so on a small machine
their start-up, not the harness, can be what caps many workers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from _repo import git_repo

TRAIN = """import json, os, time
IGNORED = 0
start = time.time()
time.sleep(float(os.environ["BENCH_EXPERIMENT_S"]))
with open(os.path.join(os.environ["BENCH_SPANS"], os.environ["OVERNIGHT_TAG"] + ".jsonl"), "a") as fh:
    fh.write(json.dumps([start, time.time()]) + "\\n")
print("score: 1.0")
"""

AGENT = (
    "python3 -c \"import os, re, time; time.sleep(float(os.environ['BENCH_AGENT_S'])); "
    "p = 'train.py'; s = open(p).read(); "
    "open(p, 'w').write(re.sub(r'^IGNORED = .*$', 'IGNORED = ' + os.environ['OVERNIGHT_EXPERIMENT_ID'], s, flags=re.M)); "
    "print('Hypothesis: change nothing that matters')\""
)


# Scheduling is measured, not the judge: a measurement taken while other programs load the machine is
# not set aside and retaken after a wait for quiet (the judge's defaults), which on a shared machine
# would measure the other programs.
# --shell: the same experiment and agent as shell commands, without a Python interpreter's start each, so that
# on a small machine what is left to cap many workers is the harness
SHELL_TRAIN = """IGNORED=0
start=$(date +%s.%N)
sleep "$BENCH_EXPERIMENT_S"
echo "[$start, $(date +%s.%N)]" >> "$BENCH_SPANS/$OVERNIGHT_TAG.jsonl"
echo "score: 1.0"
"""
SHELL_AGENT = (
    'sleep "$BENCH_AGENT_S"; sed -i "s/^IGNORED=.*/IGNORED=$OVERNIGHT_EXPERIMENT_ID/" train.sh; '
    "echo 'Hypothesis: change nothing that matters'"
)
CONFIG = (
    '[task]\nrun = "python3 train.py"\neditable = ["train.py"]\nbudget_s = 30\n[metric]\nname = "score"\ngoal = "min"\n'
    "[judge]\ndisturbed_load = 1.0\nwait_for_quiet_s = 0\n"
)


class Run:
    """One `overnight run`: the experiments' (start, end) times, the baseline's end, the command's wall time,
    and the CPU seconds the controller process itself used (its threads, not the commands it started)."""

    def __init__(self, spans: list[tuple[float, float]], wall: float, cpu: float = 0.0) -> None:
        baseline, *self.spans = spans  # the baseline is measured alone, before the workers start
        self.start, self.end = baseline[1], max(e for _, e in self.spans)
        assert all(s >= self.start for s, _ in self.spans), "an experiment started before the baseline ended"
        self.wall = wall
        self.cpu = cpu

    def busy(self) -> float:
        """Fraction of the time from the baseline's end to the last experiment's end that a slot was running."""
        return sum(e - s for s, e in self.spans) / (self.end - self.start)

    def per_minute(self) -> float:
        """Experiments per minute, from the baseline's end to the last experiment's end."""
        return 60 * len(self.spans) / (self.end - self.start)


def _run(root: Path, name: str, workers: int, slots: int, args: argparse.Namespace, ray: str = "") -> Run:
    if args.shell:
        config = CONFIG.replace('"python3 train.py"', '"sh train.sh"').replace('["train.py"]', '["train.sh"]')
        files, agent = {"train.sh": SHELL_TRAIN, "overnight.toml": config}, SHELL_AGENT
    else:
        files, agent = {"train.py": TRAIN, "overnight.toml": CONFIG}, AGENT
    repo = git_repo(root / name, {**files, "program.md": "bench\n"})
    spans = root / f"{name}.jsonl"
    env = {**os.environ, **RAY_ENV, **_bench_env(root, args)}
    command = [
        sys.executable, "-m", "overnight", "run", str(repo), "--tag", name, "--agent-command", agent,
        "--workers", str(workers), "--slots", str(slots), "--max-experiments", str(args.experiments),
        "--give-up-after", "0",
    ] + (["--executor", "ray", "--ray-address", ray] if ray else [])  # fmt: skip
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        cpu = 0.0
        while proc.poll() is None:  # the controller's own CPU: its last reading before it exits
            cpu = _cpu(proc.pid) or cpu
            time.sleep(0.05)
        if proc.returncode != 0:
            out.seek(0)
            raise SystemExit(f"overnight run failed ({proc.returncode}):\n{out.read()[-3000:].decode()}")
    wall = time.perf_counter() - started
    run = Run([tuple(json.loads(line)) for line in spans.read_text().splitlines()], wall, cpu)
    # one run each, and now and then one more (the judge measures again when the first looks noisy)
    assert len(run.spans) >= args.experiments, f"{len(run.spans)} experiment runs, expected {args.experiments}"
    return run


def _bench_env(root: Path, args: argparse.Namespace) -> dict[str, str]:
    """What the experiments and the agent read: where to note their spans (one file per run, by its tag), how long
    to sleep. Under Ray the experiments have their node's environment, so the nodes start with it too."""
    return {
        "BENCH_SPANS": str(root),
        "BENCH_EXPERIMENT_S": str(args.experiment_s),
        "BENCH_AGENT_S": str(args.experiment_s * args.agent_ratio),
    }


def _cpu(pid: int) -> float | None:
    """CPU seconds (user and system) a live process used itself, all its threads; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


WATCHED = 16
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}  # a cluster of this benchmark only, on loopback


@contextlib.contextmanager
def ray_cluster(cpus_per_node: int, bench: dict[str, str]) -> Iterator[str]:
    """A two-node Ray cluster on this machine for the benchmark's runs; its address. Stopped at the end."""
    ray = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    env = {**os.environ, **RAY_ENV, **bench}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus_per_node), "--disable-usage-stats"]
    try:
        subprocess.run([ray, "start", "--head", "--port", str(port), "--include-dashboard=false", *common],
                       env=env, check=True, capture_output=True, timeout=600)  # fmt: skip
        subprocess.run([ray, "start", "--address", address, *common], env=env, check=True, capture_output=True,
                       timeout=600)  # fmt: skip
        yield address
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=600)


def _watch_cpu(seconds: float, cgroups: bool, before: bool) -> float:
    """The controller's CPU seconds per command-second, watching WATCHED `sleep` commands for ``seconds``."""
    import threading

    import psutil

    from overnight import process
    from overnight.process import cgroup, tree

    def members_before(self: tree.Tree, fresh: bool = True) -> list[psutil.Process]:  # Tree._members until 2026-12
        try:
            root = psutil.Process(self.pid)
            members = [root, *root.children(recursive=True)]
        except psutil.Error:
            members = []
        for p in members:
            self.seen.setdefault(p.pid, p)
        return members

    now, refused = tree.Tree._members, cgroup._refused
    tree.Tree._members = members_before if before else now  # type: ignore[method-assign]
    cgroup._refused = refused or not cgroups
    try:
        with tempfile.TemporaryDirectory() as tmp:
            here = Path(tmp)

            def one(i: int) -> None:
                process.run_command(f"sleep {seconds}", cwd=here, log_path=here / f"{i}.log", timeout_s=seconds + 60)

            threads = [threading.Thread(target=one, args=(i,)) for i in range(WATCHED)]
            start = os.times()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            end = os.times()
    finally:
        tree.Tree._members, cgroup._refused = now, refused  # type: ignore[method-assign]
    return ((end.user - start.user) + (end.system - start.system)) / (WATCHED * seconds)


def watch(seconds: float = 5.0) -> None:
    from overnight.process import cgroup

    available = cgroup.Cgroup.create("bench-probe")
    if available is not None:
        available.close()
    print(f"\n{WATCHED} commands watched at once for {seconds:g} s; {len(os.listdir('/proc'))} entries in /proc\n")
    print("| cgroups | controller CPU per command-second, before | now | now / before |")
    print("|---|---|---|---|")
    for cgroups in [True, False] if available is not None else [False]:
        old = _watch_cpu(seconds, cgroups, before=True)
        new = _watch_cpu(seconds, cgroups, before=False)
        print(
            f"| {'yes' if cgroups else 'no'} | {old * 1000:.1f} ms | {new * 1000:.1f} ms | {new / old:.2f}× |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", type=int, default=12)
    parser.add_argument("--experiment-s", type=float, default=1.0)
    parser.add_argument("--agent-ratio", type=float, default=0.5, help="agent latency / experiment duration")
    parser.add_argument("--watch-only", action="store_true", help="only the controller's watch (3)")
    parser.add_argument("--workers", default="1,2,4", help="the worker counts of the scaling table (2)")
    parser.add_argument("--scaling-only", action="store_true", help="only the scaling table (2)")
    parser.add_argument("--executor", choices=("local", "ray"), default="local", help="for the scaling table (2)")
    parser.add_argument("--shell", action="store_true", help="experiment and agent as shell commands, not Python")
    args = parser.parse_args()
    if args.watch_only:
        watch()
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"{args.experiments} experiments of {args.experiment_s:g} s, agent latency {args.agent_ratio:g}× that")
        print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} at the start\n")
        if not args.scaling_only:
            print("| 1 slot | slot busy |")
            print("|---|---|")
            for workers in (1, 2):
                run = _run(root, f"u{workers}", workers, 1, args)
                print(f"| {workers} worker{'s' if workers > 1 else ''} | {run.busy():.1%} |", flush=True)
        print(
            "\n| workers = slots | experiments per minute | relative to 1 | per minute of the whole command "
            "| relative to 1 | controller CPU per experiment | controller CPU per second |"
        )
        print("|---|---|---|---|---|---|---|")
        base = base_wall = 0.0
        counts = [int(w) for w in args.workers.split(",")]
        cluster = ray_cluster(max(1, -(-max(counts) // 2)), _bench_env(root, args))
        with cluster if args.executor == "ray" else contextlib.nullcontext("") as ray:
            if ray:  # one run first, unreported, so that every reported one finds the nodes' Ray workers started
                _run(root, "warm", max(counts), max(counts), args, ray)
            for workers in counts:
                run = _run(root, f"s{workers}", workers, workers, args, ray)
                rate, rate_wall = run.per_minute(), 60 * len(run.spans) / run.wall
                base, base_wall = base or rate, base_wall or rate_wall
                print(
                    f"| {workers} | {rate:.1f} | {rate / base:.2f}× | {rate_wall:.1f} | {rate_wall / base_wall:.2f}× "
                    f"| {1000 * run.cpu / (len(run.spans) + 1):.0f} ms | {run.cpu / run.wall:.2f} s |",
                    flush=True,
                )
        print(f"load {os.getloadavg()[0]:.2f} at the end")
    if not args.scaling_only:
        watch()


if __name__ == "__main__":
    main()
