"""`overnight demo`: copy an example task into a fresh git repository, ready to run.

The examples live in examples/ and ship in the package as ``overnight.examples``.
Commands in the copied overnight.toml that start with ``python3`` (or ``python``)
are pointed at the interpreter running overnight, so the demo runs with the
packages overnight was installed with (numpy comes with it).

tinylm, the default, is a real task timed by its budget (``OVERNIGHT_BUDGET_S``). The demo
runs it as a fixed amount of work instead (``train.py --bytes``, :data:`TINYLM_BYTES`), so
that a busy machine makes the demo slower but cannot starve its runs of steps: on a loaded
machine a 20-second budget left a few dozen steps and nothing could be kept. With
``--budget`` it keeps the time budget. Either way its numpy runs on one BLAS thread: for
matrices this small more threads only spin against each other on a busy machine. The
example's own files are not changed; :func:`closing` says what a real night needs.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from overnight.choices import EXAMPLES
from overnight.errors import ConfigError

_COMMAND = re.compile(r'^(run|setup|gate|command)(\s*=\s*"(?:[A-Z_]+=\S* )*)python3? ', re.MULTILINE)
_BUDGET = re.compile(r"^budget_s\s*=\s*[\d.]+", re.MULTILINE)
_TINYLM_RUN = re.compile(r'^run = "python3 train.py"$', re.MULTILINE)
_JUDGE = re.compile(r"^\[judge\]$", re.MULTILINE)

#: the work of one tinylm demo run: training bytes (2,000 steps at its batch of 64, seconds on one core)
TINYLM_BYTES = 128_000
#: experiments after the baseline when --max-experiments is not given (12 for the others)
EXPERIMENTS = {"tinylm": 20}
#: one BLAS thread for numpy (OpenBLAS and OpenMP builds)
_ONE_THREAD = "OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1"


def _copy(source: Traversable, target: Path) -> None:
    for item in source.iterdir():
        if item.name.startswith(("__", ".")) or item.name.endswith((".pyc", ".egg-info")):
            continue
        if item.is_dir():
            (target / item.name).mkdir()
            _copy(item, target / item.name)
        else:
            (target / item.name).write_bytes(item.read_bytes())


def prepare(name: str, target: Path, budget_s: float | None = None) -> Path:
    """Copy example ``name`` into ``target`` (new or empty), make it a git repo, commit. Returns ``target``."""
    if name not in EXAMPLES:
        raise ConfigError(f"unknown example {name!r}; examples are: {', '.join(EXAMPLES)}")
    target = target.expanduser().resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"{target} exists and is not empty; give a new folder for the demo")
    target.mkdir(parents=True, exist_ok=True)
    _copy(resources.files("overnight.examples") / name, target)
    config = target / "overnight.toml"
    text = config.read_text()
    if name == "tinylm":
        text = _tinylm(text, budget_s is None)
    text = _COMMAND.sub(lambda m: f"{m.group(1)}{m.group(2)}{shlex.quote(sys.executable)} ", text)
    if budget_s is not None:
        text = _BUDGET.sub(f"budget_s = {budget_s:g}", text)
    config.write_text(text)

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=target, check=True, capture_output=True)

    git("init", "-q")
    # The user's identity when git knows one (their finalize commits are theirs); a stand-in only when it does not.
    for key, stand_in in (("user.name", "overnight demo"), ("user.email", "demo@localhost")):
        known = subprocess.run(["git", "config", "--get", key], cwd=target, capture_output=True, text=True)
        if known.returncode != 0 or not known.stdout.strip():
            git("config", key, stand_in)
    git("add", "-A")
    git("commit", "-q", "-m", f"the {name} example task")
    return target


def _tinylm(text: str, fixed_work: bool) -> str:
    """The demo's settings in tinylm's overnight.toml: one BLAS thread, and a fixed amount of work unless timed."""
    if fixed_work:
        why = (
            f"# overnight demo: a fixed amount of work ({TINYLM_BYTES:,} training bytes) instead of the time budget,\n"
            "# so a busy machine slows the demo but cannot starve it of steps. One BLAS thread: for matrices\n"
            "# this small, more threads only spin against each other on a busy machine.\n"
        )
        run = f"{_ONE_THREAD} python3 train.py --bytes {TINYLM_BYTES}"
        # The load cannot change the metric of a fixed amount of work: no run is taken again for it.
        quiet = "disturbed_load = 0             # overnight demo: load cannot change a fixed amount of work"
        text = _JUDGE.sub(f"[judge]\n{quiet}", text)
    else:
        why = "# overnight demo: one BLAS thread (for matrices this small more only spin on a busy machine)\n"
        run = f"{_ONE_THREAD} python3 train.py"
    return _TINYLM_RUN.sub(f'{why}run = "{run}"', text)


def closing(target: Path, fixed_work: bool) -> str:
    """What the demo's output ends with: where to look, and what a real night on your own script needs."""
    where = shlex.quote(str(target))
    what = (
        f"each run here trained on a fixed {TINYLM_BYTES:,} bytes, seconds of work, so that a busy machine\n"
        "could slow the demo but not starve it"
        if fixed_work
        else "each run here took seconds"
    )
    return "\n".join(
        [
            f"look around: cd {where} && overnight log && overnight show 1 && git log --oneline overnight/demo",
            "",
            f"That was a demo: {what}. A real night on your own training script needs:",
            "- a time budget the script reads: train for OVERNIGHT_BUDGET_S seconds, and make it minutes, not",
            "  seconds (budget_s = 300 in overnight.toml), so that a change has time to show what it is worth;",
            "- the seed: read OVERNIGHT_SEED (the n-th run of each commit gets seed n, so a run measured again is",
            "  a fresh draw the judge can compare), or name your SEED constant in overnight.toml's [judge] seed;",
            "- the task files, in your repository: overnight init --run 'python train.py' --editable train.py",
            "  --metric val_bpb --goal min; say in program.md what to explore, commit both files, then",
            "  overnight run --max-time 8h;",
            "- in the morning, overnight verify --budget 1800 --ablate: does each keep hold at a longer budget?",
            "  Only what holds is worth merging (overnight finalize --only-significant).",
        ]
    )
