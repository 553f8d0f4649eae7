"""The run policy: what `overnight run` (and `overnight demo`) does around the controller.

`run` takes a loaded task, the agent settings given on the command line, the limits
and how much runs at once, and:

- keeps its own credentials out of reach of the commands it starts (overnight.secrets);
- checks everything before any run exists: the agent settings (overnight.toml's
  [agent] with the command-line overrides), the slots (--workers, --slots, --gpus,
  one at a time for an exclusive task), that no limit is negative, that the task is
  ready, that a command agent's command runs; it refuses --max-cost-usd when the
  agent cannot count what it spends; and it probes the agent once, so a bad key or
  an absent server leaves no run behind;
- starts the run or resumes it (overnight.run.start), then hands it to the
  controller with one agent per worker, the executor and the limits, and watches
  it: the live view on a terminal, plain lines otherwise (OVERNIGHT_PLAIN forces
  them), with the warning when measurements do not vary;
- stops on the first Ctrl-C or SIGTERM gracefully (the running experiment is
  interrupted and recorded) and at once on the second; the exit code is then 130;
- records in the run why it ended (a limit, Ctrl-C, an error other than a failed
  baseline); a run this call created is removed again (branch, refs, folder) when
  its baseline fails, or when its agent became unavailable before any proposal,
  unless --keep-failed: bad input leaves the repository as it was;
- prints the summary: result, ledger counts, branch, state folder, how to resume.

`stop_on_signals` is also how `overnight noise` and `overnight verify` stop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any

from overnight.errors import AgentUnavailable, ConfigError, OvernightError, TaskBrokenError

if TYPE_CHECKING:
    from overnight.run.controller import Limits, Summary
    from overnight.run.slots import Slots
    from overnight.run.state import RunState
    from overnight.task import Task


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
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


def run(
    task: Task,
    tag: str | None,
    overrides: dict[str, Any],
    limits: Limits,
    force: bool = False,
    parallel: Parallel = Parallel(),
    keep_failed: bool = False,
    budget_read: bool | None = None,
) -> int:
    """Check everything, start or resume the run, print as it goes; the exit code.

    ``budget_read``: whether the run command takes its time from OVERNIGHT_BUDGET_S; None: as a look at
    its script says (overnight.script). ``overnight demo`` says False for tinylm's fixed amount of work
    (``train.py --bytes``), whose script reads the budget only when it is not given one.

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
        budget_read = run.budget_read(budget_read)  # as the start said it: a resumed demo is still fixed work
        what = "resuming" if run.resumed else "starting"
        many = f", {parallel.workers} workers, {slots.count} slots" if parallel.workers > 1 or slots.count > 1 else ""
        print(
            f"{what} run {run.tag} on branch {run.branch.name}: {task.config.metric.name} ({task.config.metric.goal}), "
            f"agent {agents[0].name}{many}",
            flush=True,
        )
        from overnight.judge import seeds
        from overnight.script import read_script

        judged = task.config.judge
        note = seeds.start_note(task.dir, task.config.task.editable, judged.seed, judged.exact)
        if note:
            print(note, flush=True)
        if budget_read is None:
            script = read_script(task.dir, task.config.task.run, task.config.task.editable)
            if script.files and not script.reads_budget:
                print("\n".join(script.lines(task.config.task.budget_s)), flush=True)
            budget_read = script.reads_budget or not script.files
        controller = Controller(run, agents, executor, limits, stop=stop, slots=slots)
        with stop_on_signals(stop), _view(task, run.state, budget_read):
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


@contextmanager
def _view(task: Task, state: RunState, budget_read: bool) -> Iterator[None]:
    """The live view on a terminal (unless OVERNIGHT_PLAIN is set), plain lines otherwise: it watches the run.
    ``budget_read``: whether the script reads OVERNIGHT_BUDGET_S (else the view shows the time taken, not a budget)."""
    from overnight.records import Experiment
    from overnight.run.state import Event
    from overnight.views import live

    alert = live.unvaried_alert(state, task.config.judge)
    config = task.config
    if sys.stdout.isatty() and not os.environ.get("OVERNIGHT_PLAIN"):
        from rich.console import Console

        with live.LiveView(
            Console(),
            config.metric.name,
            config.metric.goal_enum,
            config.task.budget_s if budget_read else None,
            state,
            alert,
            timeout_s=config.task.timeout_s,
        ) as view:
            state.watch(view.watch)
            yield
    else:
        # what runs is announced when runs are slow: as the budget says, or the time they took where it is not read
        watch = live.plain(config.task.budget_s if budget_read else None)

        def plain(event: Event, exp: Experiment) -> None:
            watch(event, exp)
            if event in (Event.FINISH, Event.KEEP) and alert.fresh():
                print(f"warning: {alert.text()}", flush=True)

        state.watch(plain)
        yield


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
