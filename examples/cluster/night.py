"""Keep a night safe off the cluster, and bring it home.

On the cluster's head, as the night goes (ray-cluster.yaml runs it every SYNC_EVERY_S seconds
and once at the end)::

    python night.py sync REPO DEST

copies the repository's ``.overnight/`` (each run's ledger as a consistent SQLite backup,
its logs, diffs and reports; only files that changed) and a git bundle of every run branch
(``overnight/*``) to DEST, a folder: SkyPilot mounts the night's bucket there.

On your machine, in your repository, once the night is over (or during it)::

    python path/to/overnight/examples/cluster/night.py home SOURCE

where SOURCE is that folder, a bucket (``s3://NAME``, ``gs://NAME``: copied with the
``aws`` or ``gsutil`` command first) or ``CLUSTER:PATH`` (copied with ``rsync`` over
SkyPilot's ssh). It fetches the run branches into your repository and puts each run's
folder under ``.overnight/``; then ``overnight status``, ``report`` and ``show`` work here.
A run folder you already have is replaced by the newer copy.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

STATE = ".overnight"
BUNDLE = "runs.bundle"


def sync(repo: Path, dest: Path) -> None:
    """Copy the night (ledgers, logs, run branches) from ``repo`` to ``dest``, changed files only."""
    source = repo / STATE
    if source.is_dir():
        for path in sorted(source.rglob("*")):
            rel = path.relative_to(source)
            if not path.is_file() or path.name.endswith(("-wal", "-shm", "-journal", ".lock")):
                continue
            target = dest / STATE / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix == ".db":
                _backup(path, target)
            elif not target.exists() or (target.stat().st_size, int(target.stat().st_mtime)) != (
                path.stat().st_size,
                int(path.stat().st_mtime),
            ):
                shutil.copy2(path, target)
    branches = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)", "refs/heads/overnight/"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if branches:
        dest.mkdir(parents=True, exist_ok=True)
        partial = dest / f"{BUNDLE}.partial"
        subprocess.run(["git", "bundle", "create", "-q", str(partial), *branches], cwd=repo, check=True)
        partial.replace(dest / BUNDLE)  # never a half-written bundle where the last good one was


def _backup(db: Path, target: Path) -> None:
    """A consistent copy of a SQLite database that is being written (the ledger)."""
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    src, out = sqlite3.connect(db), sqlite3.connect(partial)
    try:
        src.backup(out)
    finally:
        src.close()
        out.close()
    partial.replace(target)


def home(source: str, repo: Path) -> None:
    """Bring the night at ``source`` into ``repo``: the run branches, and ``.overnight/<tag>/`` per run."""
    with tempfile.TemporaryDirectory(prefix="overnight-night-") as scratch:
        folder = _local(source, Path(scratch))
        bundle = folder / BUNDLE
        if not bundle.exists():
            raise SystemExit(f"night.py: {bundle} is not there: is {source} the night's folder (NIGHT_DIR)?")
        subprocess.run(
            ["git", "fetch", "-q", "--update-head-ok", str(bundle), "+refs/heads/overnight/*:refs/heads/overnight/*"],
            cwd=repo,
            check=True,
        )
        runs = sorted(p for p in (folder / STATE).glob("*") if p.is_dir())
        for run in runs:
            target = repo / STATE / run.name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(run, target)
        names = ", ".join(r.name for r in runs) or "none"
        print(f"night.py: fetched the run branches (overnight/*) and the runs' folders ({names}) into {repo}")


def _local(source: str, scratch: Path) -> Path:
    """``source`` as a folder on this machine (downloaded into ``scratch`` when it is not one)."""
    if source.startswith("s3://"):
        subprocess.run(["aws", "s3", "sync", "--only-show-errors", source, str(scratch)], check=True)
        return scratch
    if source.startswith("gs://"):
        subprocess.run(["gsutil", "-m", "-q", "rsync", "-r", source, str(scratch)], check=True)
        return scratch
    if ":" in source and not Path(source).exists():  # CLUSTER:PATH, over SkyPilot's ssh configuration
        subprocess.run(["rsync", "-a", source.rstrip("/") + "/", str(scratch)], check=True)
        return scratch
    return Path(source)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sync", help="on the head: copy the night to a folder (the bucket's mount)")
    s.add_argument("repo", type=Path)
    s.add_argument("dest", type=Path)
    h = sub.add_parser("home", help="on your machine: bring the night into this repository")
    h.add_argument("source")
    h.add_argument("--repo", type=Path, default=Path.cwd())
    args = parser.parse_args(argv)
    if args.command == "sync":
        sync(args.repo, args.dest)
    else:
        home(args.source, args.repo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
