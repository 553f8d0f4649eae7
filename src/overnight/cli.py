"""The `overnight` command: a thin layer over the package.

Each subcommand parses its flags, calls the package, and prints. Errors derived
from OvernightError print one message and exit with the code the error carries
(see overnight.errors); Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import statistics
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console

from overnight import __version__, demo, finalize, live, report, sandbox, views, workspace
from overnight.agents import Agent, make_agent
from overnight.config import CONFIG_FILE, AgentSection, parse_duration
from overnight.errors import ConfigError, OvernightError
from overnight.executors import make_executor
from overnight.init import write_task
from overnight.records import Experiment
from overnight.run import Run
from overnight.scheduler import Limits, Scheduler, Summary
from overnight.slots import Slots
from overnight.standing import Standing
from overnight.task import Task, check_command

log = logging.getLogger("overnight")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="overnight", description="Run the autonomous research loop on a git repository."
    )
    parser.add_argument("--version", action="version", version=f"overnight {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the harness does")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="write overnight.toml and program.md for a task")
    p.add_argument("dir", nargs="?", default=".", type=Path, help="the task folder (default: .)")
    p.add_argument("--run", help="the experiment command, e.g. 'python train.py'")
    p.add_argument("--editable", action="append", help="a glob the agent may change (repeat, or comma-separate)")
    p.add_argument("--metric", help="the metric's name, as the run prints it ('name: value')")
    p.add_argument("--goal", choices=["min", "max"], help="whether lower or higher is better")

    p = sub.add_parser("run", help="run experiments until a stop condition")
    p.add_argument("dir", nargs="?", default=".", type=Path, help="the task folder (default: .)")
    p.add_argument("--tag", help="the run's name; an existing tag is resumed (default: a new tag from the time)")
    p.add_argument("--agent", help="who proposes changes (default: [agent] kind)")
    p.add_argument("--agent-command", help="for --agent command: the command that edits the files")
    p.add_argument("--agent-timeout", type=float, help="seconds one proposal may take (default: [agent] timeout_s)")
    p.add_argument("--model", help="the model for LLM and coding-CLI agents (default: [agent] model)")
    p.add_argument("--base-url", help="an OpenAI- or Anthropic-compatible server (default: [agent] base_url)")
    p.add_argument("--agent-retries", type=int, help="times a reply whose edits do not apply is sent back")
    p.add_argument("--max-cost-usd", type=float, help="stop when the agents have spent this much (USD)")
    p.add_argument("--max-tokens", type=int, help="stop when the agents have used this many tokens")
    p.add_argument(
        "--give-up-after",
        type=int,
        default=10,
        help="stop after N experiments in a row without a measurement (0: never)",
    )
    p.add_argument("--max-experiments", type=int, help="stop after this many experiments (the baseline not counted)")
    p.add_argument("--max-time", help="stop starting experiments after this long, e.g. 8h, 30m")
    p.add_argument("--force", action="store_true", help="resume a tag even though overnight.toml changed")
    p.add_argument("--workers", type=int, default=1, help="agents proposing at once, each in its own worktree")
    p.add_argument("--slots", type=int, help="experiments running at once (default: --workers; 1 if exclusive)")
    p.add_argument("--gpus", help="GPU ids, one experiment per GPU, e.g. 0,1,2,3 (sets CUDA_VISIBLE_DEVICES)")
    p.add_argument("--executor", default="local", help="where experiments run: local or ray")
    p.add_argument("--ray-address", help="for --executor ray: auto, ray://host:10001, ... (default: a local Ray)")

    p = sub.add_parser("demo", help="copy an example task into a new git repository and run it")
    p.add_argument(
        "dir", nargs="?", default="overnight-demo", type=Path, help="a new or empty folder (default: ./overnight-demo)"
    )
    p.add_argument("--example", default="tinylm", choices=demo.EXAMPLES, help="which example (default: tinylm)")
    p.add_argument("--max-experiments", type=int, default=12, help="experiments after the baseline (default: 12)")
    p.add_argument("--budget", type=float, help="seconds per experiment (default: 20 for tinylm, else the example's)")
    p.add_argument("--agent", help="who proposes changes (default: the example's; render needs an LLM or coding CLI)")
    p.add_argument("--model", help="the model for LLM and coding-CLI agents")

    p = sub.add_parser("noise", help="measure the unchanged best several times: the metric's run-to-run spread")
    p.add_argument("dir", nargs="?", default=".", type=Path, help="the task folder (default: .)")
    p.add_argument("--tag", help="the run (default: a new one, whose baseline these runs measure)")
    p.add_argument("--runs", type=int, default=5, help="how many measurements (default: 5)")

    for name, text in (("status", "summarize a run"), ("log", "list a run's experiments")):
        p = sub.add_parser(name, help=text)
        p.add_argument("dir", nargs="?", default=".", type=Path, help="the task folder (default: .)")
        p.add_argument("--tag", help="the run (default: the most recent run of the task)")
        if name == "log":
            p.add_argument("--format", choices=["table", "tsv", "json"], default="table")

    p = sub.add_parser("report", help="write the progress plot and report.md of a run")
    p.add_argument("dir", nargs="?", default=".", type=Path, help="the task folder (default: .)")
    p.add_argument("--tag", help="the run (default: the most recent run of the task)")
    p.add_argument("--out", type=Path, help="the folder to write to (default: .overnight/<tag>/report)")

    p = sub.add_parser("finalize", help="the kept changes as a clean branch overnight/<tag>-final")
    p.add_argument("dir", nargs="?", default=".", type=Path, help="the task folder (default: .)")
    p.add_argument("--tag", help="the run (default: the most recent run of the task)")
    p.add_argument("--squash", action="store_true", help="one commit for all the kept changes")
    p.add_argument("--force", action="store_true", help="write the branch again when it exists")

    p = sub.add_parser("export", help="copy a run into another tool")
    targets = p.add_subparsers(dest="target", required=True, metavar="TARGET")
    q = targets.add_parser("mlflow", help="one MLflow run per experiment (pip install 'overnight[mlflow]')")
    q.add_argument("dir", nargs="?", default=".", type=Path, help="the task folder (default: .)")
    q.add_argument("--tag", help="the run (default: the most recent run of the task)")
    q.add_argument("--tracking-uri", help="where to (default: sqlite:///<repo>/.overnight/<tag>/mlflow.db)")
    q.add_argument("--experiment-name", help="the MLflow experiment (default: overnight/<repo>[/<task>]/<tag>)")

    p = sub.add_parser("show", help="one experiment: hypothesis, status, metrics, diff, log")
    p.add_argument("id", type=int, help="the experiment's id")
    p.add_argument("dir", nargs="?", default=".", type=Path, help="the task folder (default: .)")
    p.add_argument("--tag", help="the run (default: the most recent run of the task)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="overnight: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(COMMANDS[args.command](args) or 0)
    except OvernightError as err:
        print(f"overnight: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("overnight: interrupted", file=sys.stderr)
        return 130
    except OSError as err:  # the machine's side: a full disk, a permission, a vanished folder
        print(f"overnight: error: {err}", file=sys.stderr)
        return 1


# -- init -------------------------------------------------------------------------------


def _ask(question: str, default: str = "") -> str:
    suffix = f" [{default}]" if default else ""
    answer = input(f"{question}{suffix}: ").strip()
    return answer or default


def cmd_init(args: argparse.Namespace) -> int:
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
    written, kept = write_task(args.dir, run, editable, metric, goal or "min")
    for path in written:
        print(f"wrote {path}")
    for path in kept:
        print(f"kept {path} (it exists; init never overwrites)")
    if not written:
        raise ConfigError(f"nothing written: {args.dir / CONFIG_FILE} and program.md exist already")
    print("next: edit program.md, commit both files, then `overnight run` (see README: Agents)")
    return 0


# -- run --------------------------------------------------------------------------------


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """First Ctrl-C (or SIGTERM): stop gracefully. Second Ctrl-C: stop now."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        print(
            "\novernight: stopping: the running experiment is interrupted and recorded (Ctrl-C again to force)",
            file=sys.stderr,
            flush=True,
        )

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_summary(summary: Summary, task: Task) -> None:
    base, best = summary.baseline, summary.best
    print()
    if summary.stopped:
        print(f"stopped:  {summary.stopped}")
    if base is not None and best is not None and base.metric is not None and best.metric is not None:
        change = best.metric - base.metric
        pct = f" ({100 * change / abs(base.metric):+.2f}%)" if base.metric else ""
        kept = summary.counts.get("keep", 0)
        print(f"result:   baseline {base.metric:.6g} → best {best.metric:.6g}, {change:+.6g}{pct}; {kept} kept")
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.counts.items(), key=lambda kv: -kv[1]))
    print(f"ledger:   {counts}")
    state = task.root / ".overnight" / summary.tag
    print(f"branch:   {summary.branch}   (git log {summary.branch})")
    print(f"state:    {state}  (ledger.db, logs/)")
    print(f"resume:   overnight run {task.dir} --tag {summary.tag}")


def cmd_run(args: argparse.Namespace) -> int:
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
    parallel = Parallel(args.workers, args.slots, args.gpus, args.executor, args.ray_address)
    return _run(Task.load(args.dir), args.tag, overrides, limits, force=args.force, parallel=parallel)


@contextmanager
def _view(task: Task, workers: int) -> Iterator[Callable[[Experiment], None]]:
    """The live view on a terminal (unless OVERNIGHT_PLAIN is set), plain lines otherwise."""
    if sys.stdout.isatty() and not os.environ.get("OVERNIGHT_PLAIN"):
        config = task.config
        with live.LiveView(
            Console(), config.metric.name, config.metric.goal_enum, config.task.budget_s, workers
        ) as view:
            yield view.report
    else:
        yield live.plain(announce=task.config.task.budget_s >= 5)  # slow experiments: say what runs


@dataclasses.dataclass(frozen=True)
class Parallel:
    """How many agents and experiments at once, and where experiments run."""

    workers: int = 1
    slots: int | None = None
    gpus: str | None = None
    executor: str = "local"
    ray_address: str | None = None

    def make_slots(self, task: Task) -> Slots:
        if self.workers < 1 or (self.slots is not None and self.slots < 1):
            raise ConfigError("--workers and --slots must be 1 or more")
        gpus = [g.strip() for g in self.gpus.split(",") if g.strip()] if self.gpus else []
        if self.gpus is not None and not gpus:
            raise ConfigError("--gpus: give GPU ids separated by commas, e.g. --gpus 0,1")
        if task.config.task.exclusive:
            return Slots(1, gpus[:1])
        return Slots(self.slots or self.workers, gpus)


def _agents(settings: AgentSection, workers: int) -> list[Agent]:
    """One agent per worker; tune agents get seeds of their own so they do not propose alike."""
    agents = []
    for index in range(workers):
        mine = dataclasses.replace(settings, tune=dataclasses.replace(settings.tune, seed=settings.tune.seed + index))
        agents.append(make_agent(mine))
    return agents


def _run(
    task: Task,
    tag: str | None,
    overrides: dict[str, Any],
    limits: Limits,
    force: bool = False,
    parallel: Parallel = Parallel(),
) -> int:
    """Check everything, start or resume the run, print as it goes; the exit code."""
    settings = dataclasses.replace(task.config.agent, **{k: v for k, v in overrides.items() if v is not None})
    settings = settings.check(f"{task.dir / CONFIG_FILE} (with command-line overrides)")
    slots = parallel.make_slots(task)
    for flag, value in (
        ("--max-experiments", limits.max_experiments),
        ("--max-cost-usd", limits.max_cost_usd),
        ("--max-tokens", limits.max_tokens),
        ("--give-up-after", limits.give_up_after),
    ):
        if value is not None and value < 0:
            raise ConfigError(f"{flag} must be 0 or more")
    task.check_files()
    task.check_commands()
    if task.config.task.sandbox:
        sandbox.require()
    if settings.kind == "command":
        check_command(settings.command, task.dir, "--agent-command")
    workspace.ensure_clean(task.root, workspace.modified_files(task.root))
    agents = _agents(settings, parallel.workers)
    executor = make_executor(parallel.executor, task, parallel.ray_address)
    run = Run.start(task, tag, force=force)
    stop = threading.Event()
    try:
        what = "resuming" if run.resumed else "starting"
        many = f", {parallel.workers} workers, {slots.count} slots" if parallel.workers > 1 or slots.count > 1 else ""
        print(
            f"{what} run {run.tag} on branch {run.branch}: {task.config.metric.name} ({task.config.metric.goal}), "
            f"agent {agents[0].name}{many}",
            flush=True,
        )
        with _stop_on_signals(stop), _view(task, parallel.workers) as report:
            summary = Scheduler(run, agents, executor, limits, stop=stop, report=report, slots=slots).run_loop()
    finally:
        run.close()
    _print_summary(summary, task)
    return 130 if stop.is_set() else 0


def cmd_noise(args: argparse.Namespace) -> int:
    if args.runs < 2:
        raise ConfigError("--runs must be 2 or more: a spread needs at least two measurements")
    task = Task.load(args.dir)
    task.check_files()
    task.check_commands()
    workspace.ensure_clean(task.root, workspace.modified_files(task.root))
    run = Run.start(task, args.tag)
    stop = threading.Event()
    try:
        print(f"measuring the best of run {run.tag} {args.runs} times (seeds in order)", flush=True)
        with _stop_on_signals(stop):
            best, values = Scheduler(run, None, make_executor("local", task), stop=stop).noise(args.runs)
        everything = Standing.load(run.ledger).values(best.id)
    finally:
        run.close()
    metric = task.config.metric.name
    print(f"{metric}: " + ", ".join(f"{v:.6g}" for v in values))
    if len(everything) >= 2:
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


def cmd_demo(args: argparse.Namespace) -> int:
    budget = args.budget if args.budget is not None else (20.0 if args.example == "tinylm" else None)
    target = demo.prepare(args.example, args.dir, budget)
    print(f"copied the {args.example} example into {target} (a new git repository); running it:", flush=True)
    overrides = {"kind": args.agent, "model": args.model}
    code = _run(Task.load(target), "demo", overrides, Limits(max_experiments=args.max_experiments))
    print(f"\nlook around: cd {target} && overnight log && overnight show 1 && git log --oneline overnight/demo")
    return code


# -- looking at a run -------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    print(views.status_text(views.load_view(args.dir, args.tag)))
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    view = views.load_view(args.dir, args.tag)
    formats = {"table": views.log_table, "tsv": views.log_tsv, "json": views.log_json}
    print(formats[args.format](view))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    image, text = report.write(views.load_view(args.dir, args.tag), args.out)
    print(f"wrote {image}\nwrote {text}")
    return 0


def cmd_finalize(args: argparse.Namespace) -> int:
    done = finalize.finalize(views.load_view(args.dir, args.tag), squash=args.squash, force=args.force)
    what = "one commit" if len(done.commits) == 1 else f"{len(done.commits)} commits"
    print(f"wrote branch {done.branch}: {what} holding experiments {', '.join(map(str, done.keeps))}")
    print(f"review it: git log -p {done.branch}; share it: git push origin {done.branch}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from overnight import export_mlflow  # mlflow itself is imported only when exporting

    result = export_mlflow.export(views.load_view(args.dir, args.tag), args.tracking_uri, args.experiment_name)
    print(result.summary())
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    print(views.show_text(views.load_view(args.dir, args.tag), args.id))
    return 0


COMMANDS = {
    "init": cmd_init,
    "run": cmd_run,
    "demo": cmd_demo,
    "noise": cmd_noise,
    "status": cmd_status,
    "log": cmd_log,
    "show": cmd_show,
    "report": cmd_report,
    "finalize": cmd_finalize,
    "export": cmd_export,
}
