"""The live terminal view of a run (rich), and the plain one for logs and CI.

On a terminal, a panel at the bottom shows, for each worker, the experiment it is on,
its hypothesis and a bar against the time budget; the baseline and the best; kept
and total; and the last outcomes. Each finished experiment is also printed as a line
above the panel, so the scrollback is the same story the plain output tells. When
stdout is not a terminal, only those lines are printed.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from overnight import untrusted
from overnight.config import JudgeSection
from overnight.judge import seeds
from overnight.judge.noise import unvaried
from overnight.records import MEASURED, Experiment, Goal, Status
from overnight.run.state import Event, RunState

_STYLE = {Status.KEEP: "bold green", Status.BASELINE: "cyan", Status.DISCARD: "dim"}
BAR_WIDTH = 16  # the budget bar of a worker's experiment
BUDGET_WIDTH = BAR_WIDTH + 1 + len("run 10 · 10000/10000s")  # the bar and what it measures, whole


def _runs(runs: int) -> str:
    """ " ×5" after an estimate that is the mean of 5 runs (re-measured since it was first shown), else ""."""
    return f" ×{runs}" if runs > 1 else ""


def line(exp: Experiment) -> str:
    """One finished experiment as one line (the plain output)."""
    metric = "" if exp.metric is None else f"{exp.metric:.6g}"
    took = "" if exp.duration_s is None else f"{exp.duration_s:.1f}s"
    runs = f"×{exp.runs}" if exp.runs > 1 else ""
    hypothesis, reason = untrusted.line(exp.hypothesis), untrusted.line(exp.reason)  # no escapes reach a terminal
    text = f"#{exp.id:<4} {exp.status.value:<11} {metric:>12} {runs:>3} {took:>8}  {hypothesis}"
    if exp.bookkeeping.undone is not None:
        return text + f"  [{reason}]"
    return text + (f"  [{reason}]" if exp.status not in MEASURED and reason else "")


SLOW_S = 5.0  # runs this long or longer are announced in the plain output: a log then says what is running


def plain(budget_s: float | None) -> Callable[[Event, Experiment], None]:
    """A watcher of the run's state printing a line per finished experiment, and a line when one starts (its
    hypothesis known) while runs are slow (SLOW_S or more), so that a log says what runs meanwhile.

    ``budget_s``: the budget the script reads, which is how long its runs take; None where the script does not
    read it (as in :class:`LiveView`): how long its runs take is then known only from the time they took, so a
    run is announced while the last one that finished took SLOW_S or more, or before any has finished.
    """
    took: float | None = None  # the time the last run that finished took, once one has

    def watch(event: Event, exp: Experiment) -> None:
        nonlocal took
        if event is Event.PROPOSE:
            slow = budget_s >= SLOW_S if budget_s is not None else took is None or took >= SLOW_S
            if slow:
                print(
                    f"#{exp.id:<4} {'running':<11} {'':>12} {'':>3} {'':>8}  {untrusted.line(exp.hypothesis)}",
                    flush=True,
                )
        elif event in (Event.FINISH, Event.KEEP, Event.UNDO):
            if event is not Event.UNDO and exp.duration_s is not None:  # an undone keep ran long ago
                took = exp.duration_s
            print(line(exp), flush=True)

    return watch


class Alert:
    """A warning the run's views show once it holds: every repeated run gave the same value while the metric
    is not declared exact (the seed does not reach the script: see overnight.judge.seeds)."""

    def __init__(self, state: RunState, rule: JudgeSection) -> None:
        self.state, self.rule = state, rule
        self._shown = False

    def text(self) -> str:
        noise = self.state.noise()
        return seeds.unvaried_note(noise.df) if unvaried(noise, self.rule) else ""

    def fresh(self) -> bool:
        """True the first time the warning holds (a plain output prints it once)."""
        if self._shown or not self.text():
            return False
        self._shown = True
        return True


def unvaried_alert(state: RunState, rule: JudgeSection) -> Alert:
    return Alert(state, rule)


class Snapshots(Protocol):
    """What the view reads of a run (a :class:`~overnight.run.state.RunState` is one)."""

    def snapshot(
        self,
    ) -> tuple[Experiment | None, Experiment | None, tuple[Experiment, ...], tuple[Experiment, ...]]: ...


@dataclass
class _Now:
    """What one worker is doing: its experiment, and the measurement under way (when it started, its number)."""

    exp: Experiment
    started: float
    runs: int = 0


class LiveView:
    """A rich Live panel that watches the run's state (:meth:`watch`, called from worker threads).

    Baseline, best and counts come from the run's state, ``standing`` (so a resumed run shows
    them from the start, and re-estimated bests as they change); the view itself only
    follows which experiment each worker is on, its measurement under way, and the last outcomes.

    The state calls :meth:`watch` under its lock, and watch prints through rich, which takes the
    Live display's lock; rich's refresh thread calls :meth:`render` under that lock. So render must
    never wait for the state's lock (the two threads would each hold the lock the other waits for,
    and the night would hang): watch copies what render shows from the state, and render reads
    only the copy.
    """

    def __init__(
        self,
        console: Console,
        metric: str,
        goal: Goal,
        budget_s: float | None,
        standing: Snapshots,
        alert: Alert | None = None,
        timeout_s: float | None = None,
    ) -> None:
        # budget_s None: the script does not read OVERNIGHT_BUDGET_S, so each run is shown with the time it
        # has taken, and its bar against timeout_s (what ends it) rather than against a budget nobody reads
        self.metric, self.goal, self.budget_s, self.timeout_s = metric, goal, budget_s, timeout_s
        self.standing, self.alert = standing, alert
        self.workers: dict[int, _Now] = {}
        self.recent: deque[Experiment] = deque(maxlen=6)
        self._lock = threading.Lock()  # held only to read or replace what is shown, never while waiting for another
        self._shown = standing.snapshot()  # the state as the last event left it (see the class docstring)
        self._warning = alert.text() if alert is not None else ""
        self._live = Live(console=console, get_renderable=self.render, refresh_per_second=4, transient=True)

    def __enter__(self) -> LiveView:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()

    def watch(self, event: Event, exp: Experiment) -> None:
        """Follow the run: an experiment starts (proposed), each of its measurements starts, it ends."""
        shown = self.standing.snapshot()  # under the state's lock already: the state calls its watchers so
        ending = event in (Event.FINISH, Event.KEEP, Event.UNDO)
        warning = self.alert.text() if ending and self.alert is not None else None
        with self._lock:
            self._shown = shown
            if warning is not None:
                self._warning = warning
            if event is Event.PROPOSE:
                self.workers[exp.worker] = _Now(exp, time.monotonic())
                return
            if event is Event.RUN:
                now = self.workers.get(exp.worker)
                if now is not None and now.exp.id == exp.id:  # the bar shows the measurement under way
                    now.started, now.runs = time.monotonic(), now.runs + 1
                return
            if not ending:
                return
            if event is not Event.UNDO:  # an undone keep ended long ago: its worker is on something else
                self.workers.pop(exp.worker, None)
            self.recent.append(exp)
        self._live.console.print(Text(line(exp), style=_STYLE.get(exp.status, "yellow")))

    def render(self) -> RenderableType:
        with self._lock:
            workers = sorted(self.workers.items())
            recent = list(self.recent)
            (baseline, best, history, flying), warning = self._shown, self._warning
        # Counted as status, the plot and the dashboard count them (views.tally): the ids after the baseline.
        kept = sum(1 for e in history if e.status is Status.KEEP)
        total = sum(1 for e in (*history, *flying) if e.status is not Status.BASELINE and e.id > 0)
        latest = {e.id: e for e in history}  # an outcome shown as it stands now: the mean, once measured again
        recent = [latest.get(e.id, e) for e in recent]
        head = Text()
        if baseline is not None and baseline.metric is not None:
            head.append(f"{self.metric} ({self.goal.value}) baseline {baseline.metric:.6g}{_runs(baseline.runs)}")
            if best is not None and best.metric is not None and best is not baseline:
                change = best.metric - baseline.metric
                head.append(
                    f"  best {best.metric:.6g}{_runs(best.runs)} ({change:+.4g}, #{best.id})", style="bold green"
                )
        head.append(f"   {total} experiment{'' if total == 1 else 's'} after the baseline, {kept} kept")
        running = Table(box=None, show_header=True, header_style="bold", expand=True, pad_edge=False)
        running.add_column("worker", width=6, no_wrap=True)
        running.add_column("exp", width=6, no_wrap=True)
        running.add_column("hypothesis", ratio=1, no_wrap=True, overflow="ellipsis")
        # never cut: the hypothesis gives way. "time" where the script reads no budget: the time taken, no budget
        running.add_column("budget" if self.budget_s else "time", width=BUDGET_WIDTH, no_wrap=True)
        clock = time.monotonic()
        for worker, now in workers:
            elapsed = clock - now.started
            limit = self.budget_s or self.timeout_s or elapsed or 1.0
            bar = ProgressBar(total=limit, completed=min(elapsed, limit), width=BAR_WIDTH)
            taken = f"{elapsed:.0f}/{self.budget_s:g}s" if self.budget_s else f"{elapsed:.0f}s"
            what = f"run {now.runs} · {taken}" if now.runs else "committing"
            cell = Table.grid(padding=(0, 1))
            cell.add_row(bar, Text(what, overflow="ellipsis", no_wrap=True))
            running.add_row(str(worker), f"#{now.exp.id}", Text(untrusted.line(now.exp.hypothesis)), cell)
        if not workers:
            running.add_row("", "", Text("(agents are thinking)", style="dim"), "")
        last = Table(box=None, show_header=False, expand=True, pad_edge=False)
        last.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        for exp in recent[-4:]:
            last.add_row(Text(line(exp), style=_STYLE.get(exp.status, "yellow")))
        shown = [Text(f"warning: {warning}", style="bold yellow")] if warning else []
        return Group(head, *shown, running, Text("last outcomes", style="bold"), last)
