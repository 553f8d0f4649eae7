"""The commands that only read runs: status, runs, log, show, brief, report, finalize, export, dashboard.

Each imports what it shows inside the command (the views, the dashboard, mlflow when
exporting): none of them loads the write side (the controller, the loop, agents,
executors), and `overnight --help` does not import this module.
"""

from __future__ import annotations

import argparse
import sys

from overnight.errors import ConfigError


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
