"""The commands that run experiments or write: init, run, noise, verify, demo.

Each parses its flags and calls the package; `overnight run` and `overnight demo`
then hand the task to the run policy in night.py. What they run (the controller,
the loop, agents, executors) is imported inside each command, so importing this
module loads none of it.
"""

from __future__ import annotations

import argparse
import sys
import threading

from overnight.cli import night
from overnight.errors import ConfigError, TaskBrokenError


def _ask(question: str, default: str = "") -> str:
    suffix = f" [{default}]" if default else ""
    answer = input(f"{question}{suffix}: ").strip()
    return answer or default


def cmd_init(args: argparse.Namespace) -> int:
    from overnight.cli.scaffold import write_task
    from overnight.config import CONFIG_FILE

    interactive = sys.stdin.isatty()
    editable = [g.strip() for item in (args.editable or []) for g in item.split(",") if g.strip()]
    run, metric, goal = args.run, args.metric, args.goal
    if interactive:
        run = run or _ask("experiment command (run in the task folder)", "python train.py")
        if not editable:
            editable = [
                g.strip() for g in _ask("files the agent may change (globs, comma-separated)", "train.py").split(",")
            ]
        metric = metric or _ask("metric name (the run prints 'name: value')", "val_loss")
        goal = goal or _ask("goal: min or max", "min")
    missing = [flag for flag, value in (("--run", run), ("--editable", editable), ("--metric", metric)) if not value]
    if missing:
        raise ConfigError(f"overnight init needs {', '.join(missing)} (or run it on a terminal to be asked)")
    written, kept, said = write_task(args.dir, run, editable, metric, goal or "min")
    for path in written:
        print(f"wrote {path}")
    for line in said if written else ():
        print(line)
    for path in kept:
        print(f"kept {path} (it exists; init never overwrites)")
    if not written:
        raise ConfigError(f"nothing written: {args.dir / CONFIG_FILE} and program.md exist already")
    print("next: edit program.md, commit both files, then `overnight run` (see README: Agents)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from overnight.config import parse_duration
    from overnight.run.controller import Limits
    from overnight.task import Task

    limits = Limits(
        max_experiments=args.max_experiments,
        max_time_s=parse_duration(args.max_time) if args.max_time else None,
        max_cost_usd=args.max_cost_usd,
        max_tokens=args.max_tokens,
        give_up_after=args.give_up_after,
    )
    overrides = {
        # --agent-command alone means the command agent
        "kind": args.agent or ("command" if args.agent_command else None),
        "command": args.agent_command,
        "timeout_s": args.agent_timeout,
        "model": args.model,
        "base_url": args.base_url,
        "retries": args.agent_retries,
    }
    parallel = night.Parallel(args.workers, args.slots, args.gpus, args.executor, args.ray_address)
    return night.run(
        Task.load(args.dir),
        args.tag,
        overrides,
        limits,
        force=args.force,
        parallel=parallel,
        keep_failed=args.keep_failed,
    )


def cmd_noise(args: argparse.Namespace) -> int:
    import statistics

    from overnight.executors import make_executor
    from overnight.run.controller import Controller
    from overnight.run.start import Run
    from overnight.task import Task

    if args.runs < 2:
        raise ConfigError("--runs must be 2 or more: a spread needs at least two measurements")
    task = Task.load(args.dir)
    task.check_ready()
    from overnight import secrets

    secrets.conceal()
    run = Run.start(task, args.tag)
    stop = threading.Event()
    try:
        print(f"measuring the best of run {run.tag} {args.runs} times (seeds in order)", flush=True)
        controller = Controller(run, None, make_executor("local", task), stop=stop)
        with night.stop_on_signals(stop):
            measured = controller.noise(args.runs)
        if measured is None:
            print("stopped before the baseline was measured; nothing to report")
            return 130
        best, values = measured
        everything = run.state.values(best.id)
    finally:
        run.close()
    metric = task.config.metric.name
    print(f"{metric}: " + ", ".join(f"{v:.6g}" for v in values))
    from overnight.judge import seeds

    if len(everything) >= 2 and len(set(everything)) == 1 and not task.config.judge.exact:
        # Not "standard deviation 0, min_delta = 0": equal runs are what a script that fixes its own seed gives.
        print(f"experiment {best.id}: every one of its {len(everything)} measurements gave {everything[0]:.6g}.")
        print(f"The seeds 0 to {len(everything) - 1} did not reach the script, {seeds.NO_SEED_HELP}.")
        for line in seeds.survey(task.dir, [*task.config.task.editable, "*.py"]).advice():
            print(f"  {line}")
    elif len(everything) >= 2:
        sd = statistics.stdev(everything)
        print(
            f"experiment {best.id}, {len(everything)} measurements in all: mean {statistics.mean(everything):.6g}, "
            f"standard deviation {sd:.6g}, range {min(everything):.6g} to {max(everything):.6g}"
        )
        print(
            f"suggested [judge] min_delta = {2 * sd:.3g} if you judge on single runs (repeats = 1, confirm = false);\n"
            "with confirm = true (the default) the judge weighs this noise itself, and min_delta need only be the "
            "smallest gain worth keeping. These measurements are in the ledger and inform the judge."
        )
    return 130 if stop.is_set() else 0


def cmd_verify(args: argparse.Namespace) -> int:
    import json

    from overnight import secrets
    from overnight.executors import make_executor
    from overnight.task import Task
    from overnight.verify import findings as verification
    from overnight.verify import overrides
    from overnight.verify.arms import Scale, Where, verify

    scale = Scale(args.budget, tuple(overrides.parse(s) for s in args.set), args.runs, args.ablate).check()
    if args.slots is not None and args.slots < 1:
        raise ConfigError("--slots must be 1 or more")
    task = Task.load(args.dir)
    secrets.conceal()
    gpus = args.gpus.split(",") if args.gpus else []
    executor = make_executor(args.executor, task, args.ray_address)
    # Ray spreads a round's arms over the cluster; locally one at a time unless --slots or --gpus say more.
    slots = args.slots or (64 if args.executor == "ray" else 1)
    if task.config.task.exclusive:
        slots, gpus = 1, gpus[:1]
    out = sys.stderr if args.format == "json" else sys.stdout
    stop = threading.Event()
    try:
        with night.stop_on_signals(stop):
            found = verify(task, args.tag, scale, Where(executor, slots, gpus), stop,
                           say=lambda line: print(line, file=out, flush=True))  # fmt: skip
    finally:
        executor.close()
    if args.format == "json":
        print(json.dumps(found.to_json(), indent=2))
    else:
        print()
        print(verification.text(found))
    if stop.is_set():
        return 130
    if found.gain.value is None:  # not one seed measured by both the baseline and the best: nothing was verified
        print(
            "overnight: error: verify measured no seed on both the baseline and the best (see the failed runs above "
            "and their logs under .overnight/<tag>/logs/verify-*): nothing was verified",
            file=sys.stderr,
        )
        return TaskBrokenError.exit_code
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from overnight.cli import demo
    from overnight.run.controller import Limits
    from overnight.task import Task

    target = demo.prepare(args.example, args.dir, args.budget)
    print(f"copied the {args.example} example into {target} (a new git repository); running it:", flush=True)
    overrides = {"kind": args.agent, "model": args.model}
    count = args.max_experiments if args.max_experiments is not None else demo.EXPERIMENTS.get(args.example, 12)
    fixed_work = args.example == "tinylm" and args.budget is None  # train.py --bytes: no time budget is read
    limits = Limits(max_experiments=count)
    code = night.run(Task.load(target), "demo", overrides, limits, budget_read=False if fixed_work else None)
    print("\n" + demo.closing(target, fixed_work), flush=True)
    return code
