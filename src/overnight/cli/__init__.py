"""The `overnight` command: a thin layer over the package.

Each subcommand parses its flags, calls the package, and prints. Errors derived
from OvernightError print one message and exit with the code the error carries
(see overnight.errors); Ctrl-C exits with 130.

The commands that run experiments import the write side (the controller, the loop,
agents, executors) when they run: looking at a run (status, log, show, the
dashboard) loads none of it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import shlex
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any

from overnight.cli import grammar as arguments
from overnight.errors import AgentUnavailable, ConfigError, OvernightError, TaskBrokenError

if TYPE_CHECKING:
    from overnight.run.controller import Limits, Summary
    from overnight.run.slots import Slots
    from overnight.run.state import RunState
    from overnight.task import Task

log = logging.getLogger("overnight")


def main(argv: Sequence[str] | None = None) -> int:
    grammar = arguments.parser()
    args = grammar.parse_args(argv)
    if args.command is None:  # `overnight` alone: what it can do
        grammar.print_help()
        return 0
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="overnight: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(COMMANDS[args.command](args) or 0)
    except OvernightError as err:
        print(f"overnight: error: {err}", file=sys.stderr)
        hint = _which_run(args)
        if hint:
            print(f"overnight: {hint}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("overnight: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `overnight log | head`: the reader has what it wanted
        _quiet_stdout()
        return 0
    except OSError as err:  # the machine's side: a full disk, a permission, a vanished folder
        print(f"overnight: error: {err}", file=sys.stderr)
        return 1


# The commands that look at (or verify) one run, the most recent of the task unless --tag names one.
_ONE_RUN = {"status", "log", "show", "report", "finalize", "export", "brief", "verify", "dashboard"}


def _which_run(args: argparse.Namespace) -> str:
    """After an error about the run a command took by default: which run that was, and the task's others."""
    from overnight import views

    if args.command not in _ONE_RUN or getattr(args, "tag", None) is not None:
        return ""
    from overnight.run.paths import runs_of
    from overnight.views import runs as runlist

    try:
        root, rel = views.locate(args.dir)
        found = runs_of(root, rel)
        return runlist.choice_note(root, rel, found[-1][1], defaulted=True) if found else ""
    except (OvernightError, OSError):  # the error was about the folder itself: nothing to add
        return ""


def _quiet_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null, so Python's flush at exit does not complain."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


# -- init -------------------------------------------------------------------------------


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
    from overnight.views.text import delta, figure

    base, best = summary.baseline, summary.best
    print()
    if summary.stopped:
        print(f"stopped:  {summary.stopped}")
    if base is not None and best is not None and base.metric is not None and best.metric is not None:
        kept = summary.counts.get("keep", 0)
        moved = delta(best.metric, base.metric)
        print(f"result:   baseline {figure(base.metric, base.runs)} → best {figure(best.metric, best.runs)}: "
              f"{moved}; {kept} kept")  # fmt: skip
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.counts.items(), key=lambda kv: -kv[1]))
    print(f"ledger:   {counts}")
    state = task.root / ".overnight" / summary.tag
    print(f"branch:   {summary.branch}   (git log {summary.branch})")
    print(f"state:    {shlex.quote(str(state))}  (ledger.db, logs/)")
    print(f"resume:   overnight run {shlex.quote(str(task.dir))} --tag {summary.tag}")


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
    parallel = Parallel(args.workers, args.slots, args.gpus, args.executor, args.ray_address)
    return _run(
        Task.load(args.dir),
        args.tag,
        overrides,
        limits,
        force=args.force,
        parallel=parallel,
        keep_failed=args.keep_failed,
    )


@contextmanager
def _view(task: Task, state: RunState) -> Iterator[None]:
    """The live view on a terminal (unless OVERNIGHT_PLAIN is set), plain lines otherwise: it watches the run."""
    from overnight.records import Experiment
    from overnight.run.state import Event
    from overnight.views import live

    alert = live.unvaried_alert(state, task.config.judge)
    if sys.stdout.isatty() and not os.environ.get("OVERNIGHT_PLAIN"):
        from rich.console import Console

        config = task.config
        with live.LiveView(
            Console(), config.metric.name, config.metric.goal_enum, config.task.budget_s, state, alert
        ) as view:
            state.watch(view.watch)
            yield
    else:
        watch = live.plain(announce=task.config.task.budget_s >= 5)  # slow experiments: say what runs

        def plain(event: Event, exp: Experiment) -> None:
            watch(event, exp)
            if event in (Event.FINISH, Event.KEEP) and alert.fresh():
                print(f"warning: {alert.text()}", flush=True)

        state.watch(plain)
        yield


@dataclasses.dataclass(frozen=True)
class Parallel:
    """How many agents and experiments at once, and where experiments run."""

    workers: int = 1
    slots: int | None = None
    gpus: str | None = None
    executor: str = "local"
    ray_address: str | None = None

    def make_slots(self, task: Task) -> Slots:
        from overnight.run.slots import Slots

        if self.workers < 1 or (self.slots is not None and self.slots < 1):
            raise ConfigError("--workers and --slots must be 1 or more")
        gpus = [g.strip() for g in self.gpus.split(",") if g.strip()] if self.gpus else []
        if self.gpus is not None and not gpus:
            raise ConfigError("--gpus: give GPU ids separated by commas, e.g. --gpus 0,1")
        return Slots.for_task(task.config.task.exclusive, self.slots or self.workers, gpus)


def _run(
    task: Task,
    tag: str | None,
    overrides: dict[str, Any],
    limits: Limits,
    force: bool = False,
    parallel: Parallel = Parallel(),
    keep_failed: bool = False,
) -> int:
    """Check everything, start or resume the run, print as it goes; the exit code.

    A run this call created whose baseline fails is removed again (branch, refs, folder),
    unless ``keep_failed``: bad input leaves the repository as it was.
    """
    from overnight import secrets
    from overnight.agents import make_agent
    from overnight.config import CONFIG_FILE
    from overnight.executors import make_executor
    from overnight.records import Status
    from overnight.run.controller import Controller
    from overnight.run.start import Run
    from overnight.task import check_command

    secrets.conceal()  # the commands it starts cannot read its credentials from /proc
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
    task.check_ready()
    if settings.kind == "command":
        check_command(settings.command, task.dir, "--agent-command")
    agents = [make_agent(settings, worker) for worker in range(parallel.workers)]
    uncounted = agents[0].uncounted() if limits.max_cost_usd is not None else ""
    if uncounted:  # a budget nobody can count would never stop the run: say so instead
        raise ConfigError(
            f"--max-cost-usd cannot be kept: {uncounted}. Give the model's prices in overnight.toml "
            "([agent] input_usd_per_mtok and output_usd_per_mtok, USD per million tokens), "
            "or limit the run with --max-tokens or --max-experiments instead"
        )
    try:  # before any run exists: a try with a bad key or no server leaves no run behind
        agents[0].probe()
    except BaseException as err:
        for agent in agents:
            agent.close()
        if isinstance(err, AgentUnavailable):
            raise AgentUnavailable(f"{err}\nnothing was run: the agent is checked before any baseline") from None
        raise
    executor = make_executor(parallel.executor, task, parallel.ray_address)
    try:
        run = Run.start(task, tag, force=force)
    except BaseException:  # the run was refused (held, changed settings): let go of what was started for it
        with contextlib.ExitStack() as closing:
            closing.callback(executor.close)
            for agent in agents:
                closing.callback(agent.close)
        raise
    stop = threading.Event()
    try:
        run.note_agent(dataclasses.asdict(settings))
        what = "resuming" if run.resumed else "starting"
        many = f", {parallel.workers} workers, {slots.count} slots" if parallel.workers > 1 or slots.count > 1 else ""
        print(
            f"{what} run {run.tag} on branch {run.branch.name}: {task.config.metric.name} ({task.config.metric.goal}), "
            f"agent {agents[0].name}{many}",
            flush=True,
        )
        from overnight.judge import seeds

        judged = task.config.judge
        note = seeds.start_note(task.dir, task.config.task.editable, judged.seed, judged.exact)
        if note:
            print(note, flush=True)
        controller = Controller(run, agents, executor, limits, stop=stop, slots=slots)
        with _stop_on_signals(stop), _view(task, run.state):
            summary = controller.run_workers()
        run.note_end(summary.stopped)
    except TaskBrokenError as err:
        run.close()
        if run.resumed or keep_failed:
            raise
        run.discard()
        raise TaskBrokenError(
            f"{err}\nthe run was removed again (its branch {run.branch.name} and {run.paths.dir}); "
            "pass --keep-failed to keep them for a look"
        ) from None
    except AgentUnavailable as err:
        run.note_end(f"stopped: {str(err).splitlines()[0]}")
        run.close()
        # A new run whose agent could not make one proposal (a key the probe could not check, a coding CLI
        # that is not logged in) holds nothing worth a look: it must not become the task's newest run.
        proposed = any(e.status not in (Status.BASELINE, Status.REJECTED) for e in run.state.experiments())
        if run.resumed or keep_failed or proposed:
            raise
        run.discard()
        raise AgentUnavailable(
            f"{err}\nthe run was removed again (its branch {run.branch.name} and {run.paths.dir}): the agent made "
            "no proposal; pass --keep-failed to keep them for a look"
        ) from None
    except OvernightError as err:
        run.note_end(f"stopped: {str(err).splitlines()[0]}")
        raise
    finally:
        run.close()
    _print_summary(summary, task)
    return 130 if stop.is_set() else 0


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
        with _stop_on_signals(stop):
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
        with _stop_on_signals(stop):
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

    budget = args.budget if args.budget is not None else (20.0 if args.example == "tinylm" else None)
    target = demo.prepare(args.example, args.dir, budget)
    print(f"copied the {args.example} example into {target} (a new git repository); running it:", flush=True)
    overrides = {"kind": args.agent, "model": args.model}
    code = _run(Task.load(target), "demo", overrides, Limits(max_experiments=args.max_experiments))
    print(f"\nlook around: cd {shlex.quote(str(target))} && overnight log && overnight show 1 && "
          "git log --oneline overnight/demo")  # fmt: skip
    return code


# -- looking at a run -------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    from overnight import untrusted, views
    from overnight.views import commands
    from overnight.views import runs as runlist

    view = views.load_view(args.dir, args.tag)
    print(untrusted.printable(commands.status_text(view)))
    note = runlist.choice_note(view.root, view.meta["task"] or ".", view.tag, defaulted=args.tag is None)
    if note:
        print(f"other runs:  {note}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from overnight import views
    from overnight.views import runs as runlist

    root, rel = views.locate(args.dir)
    found = runlist.lines(root, rel)
    print(runlist.as_json(found) if args.format == "json" else runlist.text(found))
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    from overnight import untrusted, views
    from overnight.views import commands

    view = views.load_view(args.dir, args.tag)
    formats = {"table": commands.log_table, "tsv": commands.log_tsv, "json": commands.log_json}
    print(untrusted.printable(formats[args.format](view)))  # what experiments and agents wrote: no escapes
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from overnight import views
    from overnight.views import report

    image, text = report.write(views.load_view(args.dir, args.tag), args.out)
    print(f"wrote {image}\nwrote {text}")
    return 0


def cmd_finalize(args: argparse.Namespace) -> int:
    from overnight import views
    from overnight.views import finalize

    view = views.load_view(args.dir, args.tag)
    only = finalize.significant(view) if args.only_significant else None
    done = finalize.finalize(view, squash=args.squash, force=args.force, only=only)
    what = "one commit" if len(done.commits) == 1 else f"{len(done.commits)} commits"
    kept = ", ".join(f"#{k}" for k in done.keeps)
    print(f"wrote branch {done.branch}: {what}, the kept {'change' if len(done.keeps) == 1 else 'changes'} {kept}")
    if only is not None:
        left = [e.id for e in view.experiments if e.status.value == "keep" and e.id not in done.keeps]
        if left:
            print(f"left out: {', '.join(f'#{k}' for k in left)} (no significant contribution at scale: "
                  "see `overnight report` or `overnight verify --ablate`)")  # fmt: skip
    from overnight import git

    remotes = git.git("remote", cwd=view.root, check=False).split()
    remote = "origin" if "origin" in remotes else remotes[0] if remotes else ""
    share = f"; share it: git push {remote} {done.branch}" if remote else " (the repository has no remote to push to)"
    print(f"review it: git log -p {done.branch}{share}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from overnight import views
    from overnight.views import mlflow as export_mlflow  # mlflow itself is imported only when exporting

    result = export_mlflow.export(views.load_view(args.dir, args.tag), args.tracking_uri, args.experiment_name)
    print(result.summary())
    return 0


def cmd_brief(args: argparse.Namespace) -> int:
    from overnight import untrusted
    from overnight.agents import preview

    print(untrusted.printable(preview.next_brief(args.dir, args.tag, args.agent)))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from overnight import untrusted, views
    from overnight.views import commands

    print(untrusted.printable(commands.show_text(views.load_view(args.dir, args.tag), args.id)))
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from overnight.views import dashboard

    try:
        server = dashboard.serve(args.dir, args.tag, args.host, args.port)
    except OSError as err:  # the port is taken, or the address is not this machine's
        raise ConfigError(
            f"cannot listen on {args.host}:{args.port}: {err.strerror or err}; use another --port"
        ) from None
    print(f"overnight dashboard: {server.url}  (read-only; Ctrl-C to stop)", flush=True)
    if not server.local_only:
        print(
            f"overnight: warning: on {args.host}, anyone who can reach this machine can read the run", file=sys.stderr
        )
    dashboard.run_forever(server)
    return 0


COMMANDS = {
    "init": cmd_init,
    "run": cmd_run,
    "demo": cmd_demo,
    "noise": cmd_noise,
    "verify": cmd_verify,
    "runs": cmd_runs,
    "status": cmd_status,
    "log": cmd_log,
    "show": cmd_show,
    "brief": cmd_brief,
    "report": cmd_report,
    "finalize": cmd_finalize,
    "export": cmd_export,
    "dashboard": cmd_dashboard,
}
