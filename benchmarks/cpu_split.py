"""The CPU of one `overnight run` split in two: the controller itself and the processes it starts.

The same task as benchmarks/overhead.py (an instant agent and an instant experiment), run in
this process (`overnight.cli.main`) with `os.times()` around it: its own CPU (all its threads)
and its children's (the commands, git). Interpreter start-up is not counted; the run's set-up
and baseline are. With PYTHONPATH pointing at one checkout's `src` or another's, two versions
compare on the same machine:

    python benchmarks/cpu_split.py  # --experiments 101
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

from _repo import arguments
from overhead import AGENT, _template


def main() -> None:
    args = arguments(__doc__, experiments=101)
    from overnight.cli import main as overnight

    with tempfile.TemporaryDirectory() as tmp:
        repo = _template(Path(tmp))
        os.chdir(repo)
        os.environ["OVERNIGHT_PLAIN"] = "1"
        before, started = os.times(), time.perf_counter()
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet), contextlib.suppress(SystemExit):
            overnight(
                ["run", ".", "--tag", "bench", "--agent-command", AGENT, "--max-experiments", str(args.experiments)]
            )
        after, wall = os.times(), time.perf_counter() - started
        os.chdir("/")
    n = args.experiments
    own = after.user - before.user + after.system - before.system
    children = after.children_user - before.children_user + after.children_system - before.children_system
    print(f"{n} experiments: wall {1000 * wall / n:.1f} ms, controller CPU {1000 * own / n:.1f} ms, "
          f"its processes' CPU {1000 * children / n:.1f} ms per experiment")  # fmt: skip


if __name__ == "__main__":
    main()
