"""The command line's grammar: every subcommand and flag of `overnight`, with its help.

write.py and read.py hold what each subcommand does; this module only says what it accepts.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from overnight._version import __version__
from overnight.choices import AGENT_KINDS, DEFAULT_HOST, DEFAULT_PORT, EXAMPLES


def number(text: str) -> float:
    """A finite number (argparse's float takes "nan" and "inf", which switch limits off silently)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def gpus(text: str) -> str:
    """GPU ids for CUDA_VISIBLE_DEVICES: indices, or the GPU-/MIG- UUIDs nvidia-smi -L prints."""
    ids = [g.strip() for g in text.split(",") if g.strip()]
    bad = [g for g in ids if not (g.isdigit() or g.startswith(("GPU-", "MIG-")))]
    if not ids or bad:
        raise argparse.ArgumentTypeError(
            f"expected GPU ids separated by commas, e.g. 0,1 (or GPU-/MIG- UUIDs), got {text!r}"
        )
    return ",".join(ids)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="overnight", description="Run the autonomous research loop on a git repository."
    )
    parser.add_argument("--version", action="version", version=f"overnight {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the harness does")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")  # none: the help is printed

    p = sub.add_parser("init", help="write overnight.toml and program.md for a task")
    p.add_argument("dir", nargs="?", default=".", type=Path, help="the task folder (default: .)")
    p.add_argument("--run", help="the experiment command, e.g. 'python train.py'")
    p.add_argument("--editable", action="append", help="a glob the agent may change (repeat, or comma-separate)")
    p.add_argument("--metric", help="the metric's name, as the run prints it ('name: value')")
    p.add_argument("--goal", choices=["min", "max"], help="whether lower or higher is better (default: min)")

    p = sub.add_parser("run", help="run experiments until a stop condition")
    p.add_argument("dir", nargs="?", default=".", type=Path, help="the task folder (default: .)")
    p.add_argument("--tag", help="the run's name; an existing tag is resumed (default: a new tag from the time)")
    p.add_argument(
        "--agent",
        choices=AGENT_KINDS,
        metavar="KIND",
        help=f"who proposes changes: {', '.join(AGENT_KINDS)} (default: [agent] kind, else tune)",
    )
    p.add_argument("--agent-command", help="for --agent command: the command that edits the files (implies it)")
    p.add_argument("--agent-timeout", type=number, help="seconds one proposal may take (default: [agent] timeout_s)")
    p.add_argument("--model", help="the model for LLM and coding-CLI agents (default: [agent] model)")
    p.add_argument("--base-url", help="an OpenAI- or Anthropic-compatible server (default: [agent] base_url)")
    p.add_argument(
        "--agent-retries",
        type=int,
        help="times a reply whose edits do not apply is sent back (default: [agent] retries, else 2)",
    )
    p.add_argument(
        "--max-cost-usd", type=number, help="stop when the agents have spent this much (USD; default: no limit)"
    )
    p.add_argument("--max-tokens", type=int, help="stop when the agents have used this many tokens (default: no limit)")
    p.add_argument(
        "--give-up-after",
        type=int,
        default=10,
        help="stop after N experiments in a row without a measurement (0: never; default: 10)",
    )
    p.add_argument(
        "--max-experiments",
        type=int,
        help="stop after this many experiments, the baseline not counted (default: no limit)",
    )
    p.add_argument("--max-time", help="stop starting experiments after this long, e.g. 8h, 30m (default: no limit)")
    p.add_argument("--force", action="store_true", help="resume a tag even though overnight.toml changed")
    p.add_argument(
        "--keep-failed",
        action="store_true",
        help="when the baseline fails, keep the new run's branch and state (default: they are removed again)",
    )
    p.add_argument(
        "--workers", type=int, default=1, help="agents proposing at once, each in its own worktree (default: 1)"
    )
    p.add_argument("--slots", type=int, help="experiments running at once (default: --workers; 1 if exclusive)")
    p.add_argument(
        "--gpus",
        type=gpus,
        help="GPU ids, one experiment per GPU, e.g. 0,1,2,3 (sets CUDA_VISIBLE_DEVICES; default: none)",
    )
    p.add_argument(
        "--executor", default="local", choices=["local", "ray"], help="where experiments run (default: local)"
    )
    p.add_argument(
        "--ray-address",
        help="for --executor ray: auto (the cluster this machine is a node of) or the head's HOST:PORT "
        "(default: a Ray of its own on this machine); Ray Client's ray:// is not supported",
    )

    p = sub.add_parser("demo", help="copy an example task into a new git repository and run it")
    p.add_argument(
        "dir", nargs="?", default="overnight-demo", type=Path, help="a new or empty folder (default: ./overnight-demo)"
    )
    p.add_argument("--example", default="tinylm", choices=EXAMPLES, help="which example (default: tinylm)")
    p.add_argument(
        "--max-experiments", type=int, help="experiments after the baseline (default: 20 for tinylm, else 12)"
    )
    p.add_argument(
        "--budget",
        type=number,
        help="a time budget in seconds per experiment (default: the example's; tinylm's demo runs a fixed amount of work)",
    )
    p.add_argument(
        "--agent",
        choices=AGENT_KINDS,
        metavar="KIND",
        help=f"who proposes changes: {', '.join(AGENT_KINDS)} (default: the example's; render needs an LLM or coding CLI)",
    )
    p.add_argument("--model", help="the model for LLM and coding-CLI agents (default: the example's, if any)")

    p = sub.add_parser("noise", help="measure the unchanged best several times: the metric's run-to-run spread")
    p.add_argument("dir", nargs="?", default=".", type=Path, help="the task folder (default: .)")
    p.add_argument("--tag", help="the run (default: a new one, whose baseline these runs measure)")
    p.add_argument("--runs", type=int, default=5, help="how many measurements (default: 5)")

    p = sub.add_parser(
        "verify", help="measure the baseline and the best again at a larger scale; --ablate: each keep's part"
    )
    p.add_argument("dir", nargs="?", default=".", type=Path, help="the task folder (default: .)")
    p.add_argument("--tag", help="the run (default: the most recent run of the task)")
    p.add_argument("--budget", type=number, help="OVERNIGHT_BUDGET_S at scale, in seconds (default: the task's)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a module-level UPPER_CASE constant of an editable file to rewrite, else an environment variable "
        "for the commands (repeat; e.g. --set DEPTH=24)",
    )
    p.add_argument("--runs", type=int, default=3, help="runs of each arm, paired by seed (default: 3)")
    p.add_argument("--ablate", action="store_true", help="also measure the best without each keep in turn")
    p.add_argument("--format", choices=["text", "json"], default="text", help="text (default) or json")
    p.add_argument("--slots", type=int, help="measurements at once (default: 1; one per GPU with --gpus)")
    p.add_argument("--gpus", type=gpus, help="GPU ids, one measurement per GPU (sets CUDA_VISIBLE_DEVICES)")
    p.add_argument(
        "--executor", default="local", choices=["local", "ray"], help="where measurements run (default: local)"
    )
    p.add_argument(
        "--ray-address",
        help="for --executor ray: auto (the cluster this machine is a node of) or the head's HOST:PORT "
        "(default: a Ray of its own on this machine); Ray Client's ray:// is not supported",
    )

    p = sub.add_parser("runs", help="list the runs of a task: tag, started, state, experiments, kept, best")
    p.add_argument("dir", nargs="?", default=".", type=Path, help="the task folder (default: .)")
    p.add_argument("--format", choices=["table", "json"], default="table", help="table (default) or json")

    for name, text in (("status", "summarize a run"), ("log", "list a run's experiments")):
        p = sub.add_parser(name, help=text)
        p.add_argument("dir", nargs="?", default=".", type=Path, help="the task folder (default: .)")
        p.add_argument("--tag", help="the run (default: the most recent run of the task)")
        if name == "log":
            p.add_argument(
                "--format",
                choices=["table", "tsv", "json"],
                default="table",
                help="table (default), tsv (autoresearch's results.tsv) or json (every field, one object per experiment)",
            )

    p = sub.add_parser("report", help="write the progress plot and report.md of a run")
    p.add_argument("dir", nargs="?", default=".", type=Path, help="the task folder (default: .)")
    p.add_argument("--tag", help="the run (default: the most recent run of the task)")
    p.add_argument("--out", type=Path, help="the folder to write to (default: .overnight/<tag>/report)")

    p = sub.add_parser("finalize", help="the kept changes as a clean branch overnight/<tag>-final")
    p.add_argument("dir", nargs="?", default=".", type=Path, help="the task folder (default: .)")
    p.add_argument("--tag", help="the run (default: the most recent run of the task)")
    p.add_argument("--squash", action="store_true", help="one commit for all the kept changes")
    p.add_argument(
        "--only-significant",
        action="store_true",
        help="only the keeps whose contribution at scale is positive (from the latest `overnight verify --ablate`)",
    )
    p.add_argument("--force", action="store_true", help="write the branch again when it exists")

    p = sub.add_parser("export", help="copy a run into another tool")
    targets = p.add_subparsers(dest="target", required=True, metavar="TARGET")
    q = targets.add_parser("mlflow", help="one MLflow run per experiment (pip install 'overnight[mlflow]')")
    q.add_argument("dir", nargs="?", default=".", type=Path, help="the task folder (default: .)")
    q.add_argument("--tag", help="the run (default: the most recent run of the task)")
    q.add_argument("--tracking-uri", help="where to (default: sqlite:///<repo>/.overnight/<tag>/mlflow.db)")
    q.add_argument("--experiment-name", help="the MLflow experiment (default: overnight/<repo>[/<task>]/<tag>)")

    p = sub.add_parser("brief", help="print the brief the next agent of a run would get (its rules, history, notebook)")
    p.add_argument("dir", nargs="?", default=".", type=Path, help="the task folder (default: .)")
    p.add_argument("--tag", help="the run (default: the most recent run of the task)")
    p.add_argument(
        "--agent",
        metavar="KIND",
        help="as this agent kind reads it: command (JSON), a coding CLI or a chat model (text) "
        "(default: the agent the run last used)",
    )

    p = sub.add_parser("show", help="one experiment: hypothesis, status, metrics, diff, log")
    p.add_argument("id", type=int, help="the experiment's id")
    p.add_argument("dir", nargs="?", default=".", type=Path, help="the task folder (default: .)")
    p.add_argument("--tag", help="the run (default: the most recent run of the task)")

    p = sub.add_parser("dashboard", help="a live, read-only web page of a run: chart, experiments, diffs, logs")
    p.add_argument("dir", nargs="?", default=".", type=Path, help="the task folder (default: .)")
    p.add_argument("--tag", help="the run (default: the most recent run of the task, followed as new runs start)")
    p.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="the address to listen on (default: 127.0.0.1; the page has no login: another address shows the run to anyone who reaches it)",
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="the port (default: 8765; 0: a free one)")
    return parser
