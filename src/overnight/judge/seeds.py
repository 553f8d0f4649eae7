"""Seeds that reach the script: ``[judge] seed`` planted per run, and a look at whether a script reads one.

The judge's statistics need the n-th run of a commit to be a different random draw from
its other runs. The harness hands every run ``OVERNIGHT_SEED = n``; a script that reads it
is seeded. Most training scripts fix their seed in code instead (``SEED = 42``, then
``torch.manual_seed(SEED)``), and then every run of a commit gives the same value: the
judge sees no noise, a re-roll of the random stream looks like a real gain, and every
interval has zero width.

``[judge] seed = "SEED"`` names such a constant. :func:`planted` sets it, in the measured
copy and for the length of one measurement, to the run's seed number (the commit is left as
it is, and the file is restored afterwards), so repeated runs are different draws and a change
of the seed's value is the no-op it is. The constant is a module-level assignment of an
editable ``.py`` file (``SEED = 42``, ``SEED: int = 42``; any expression on the right, over
several lines or not), found with ``ast``: a docstring or comment that mentions it is left alone.

:func:`survey` is what ``overnight init`` and the start of a run look at: whether the task's
files read ``OVERNIGHT_SEED``, which constants look like seeds, and which calls seed a
generator with a literal (``manual_seed(42)``), with what to change.
"""

from __future__ import annotations

import ast
import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from overnight import globs, pysource

_CONSTANT = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_SEEDISH = re.compile(r"(^|_)(RANDOM_)?SEED(S)?($|_)")
# a generator seeded with a literal: torch.manual_seed(42), np.random.seed(0), random.seed(1),
# default_rng(0), PRNGKey(0), tf.random.set_seed(3), set_seed(7)
_LITERAL_CALL = re.compile(
    r"\b(manual_seed|manual_seed_all|random\.seed|default_rng|PRNGKey|set_seed|RandomState|Random)\(\s*(\d+)\s*\)"
)
MAX_BYTES = 4_000_000  # a file larger than this is not a script to search or rewrite

NO_SEED_HELP = (
    "so the judge cannot tell a re-roll of the random stream from a real gain. Either make the script read the seed the harness gives each run "
    '(e.g. SEED = int(os.environ.get("OVERNIGHT_SEED", 42))), or name its seed constant in overnight.toml: '
    '[judge] seed = "SEED" (the harness then sets it per run); if the metric really has no randomness, '
    "say so with [judge] exact = true"
)


def is_constant_name(name: str) -> bool:
    return bool(_CONSTANT.match(name))


def assign(source: str, name: str, value: int) -> str | None:
    """``source`` with every module-level assignment of ``name`` set to ``value``; None when it has none
    (or does not parse)."""
    return pysource.assign(source, name, str(value))


def _scripts(task_dir: Path, editable: Sequence[str]) -> list[Path]:
    """The editable ``.py`` files under ``task_dir``: regular files, not links, of a sane size."""
    paths = []
    for rel in sorted(globs.files_under(task_dir, editable)):
        path = task_dir / rel
        if path.suffix == ".py" and not path.is_symlink() and path.is_file() and path.stat().st_size <= MAX_BYTES:
            paths.append(path)
    return paths


class SeedMissing(Exception):
    """``[judge] seed`` names a constant that no editable file assigns."""


def missing(name: str) -> str:
    """What to say when no editable file assigns the seed constant ``name``."""
    return (
        f'[judge] seed = "{name}": no editable .py file assigns {name} at module level (as `{name} = 42`), '
        f"so every run of this commit would be the same draw; keep the line `{name} = ...` (the harness sets it "
        "to each run's seed), or change [judge] seed"
    )


def assigned(task_dir: Path, editable: Sequence[str], name: str) -> list[str]:
    """The editable ``.py`` files (task-relative) that assign the constant ``name`` at module level."""
    found = []
    for path in _scripts(task_dir, editable):
        try:
            if pysource.value_spans(path.read_text(encoding="utf-8"), name):
                found.append(path.relative_to(task_dir).as_posix())
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
            continue
    return found


@contextlib.contextmanager
def planted(task_dir: Path, editable: Sequence[str], name: str, value: int) -> Iterator[list[str]]:
    """For the length of the block, every editable file that assigns the constant ``name`` at module
    level assigns ``value`` instead; yields those files (task-relative). The files are restored after.

    Raises SeedMissing when none assigns it: runs of such a commit would all be the same draw.
    """
    original: dict[Path, str] = {}
    for path in _scripts(task_dir, editable):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        changed = assign(text, name, value)
        if changed is not None:
            original[path] = text
            if changed != text:
                path.write_text(changed, encoding="utf-8")
    if not original:
        raise SeedMissing(missing(name))
    try:
        yield [p.relative_to(task_dir).as_posix() for p in original]
    finally:
        for path, text in original.items():
            with contextlib.suppress(OSError):
                path.write_text(text, encoding="utf-8")


@dataclass(frozen=True)
class Survey:
    """What a task's files say about seeds."""

    reads_env: tuple[str, ...]  # files that mention OVERNIGHT_SEED
    constants: tuple[tuple[str, str], ...]  # (file, NAME) of module-level constants that look like seeds
    literals: tuple[tuple[str, int, str], ...]  # (file, line, call) of generators seeded with a literal

    @property
    def seeded(self) -> bool:
        """Whether a script reads the harness's seed (as far as its text shows)."""
        return bool(self.reads_env)

    def advice(self) -> list[str]:
        """What to do so each run is a different draw, one line each (empty when a script reads it)."""
        if self.seeded:
            return []
        lines = []
        for file, name in self.constants:
            lines.append(f'{file} fixes its seed in {name}: [judge] seed = "{name}" makes the harness set it per run')
        if self.constants:  # literals beside a seed constant are most often a fixed data split: leave them be
            return lines
        for file, line, call in self.literals:
            lines.append(
                f"{file}:{line} seeds a generator with a literal ({call}): if it seeds the training (not a fixed data "
                "split), put the number in a module-level constant (SEED = ...) and name it in [judge] seed, or "
                'read os.environ["OVERNIGHT_SEED"]'
            )
        return lines


def survey(task_dir: Path, files: Sequence[str]) -> Survey:
    """Look at the ``.py`` files matching ``files`` (globs) under ``task_dir``."""
    reads, constants, literals = [], [], []
    for path in _scripts(task_dir, files):
        rel = path.relative_to(task_dir).as_posix()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if "OVERNIGHT_SEED" in text:
            reads.append(rel)
        try:
            body = ast.parse(text).body
        except (SyntaxError, ValueError):
            continue
        for node in body:
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, ast.AnnAssign)
                else []
            )
            for t in targets:
                if isinstance(t, ast.Name) and is_constant_name(t.id) and _SEEDISH.search(t.id):
                    constants.append((rel, t.id))
        for number, line in enumerate(text.splitlines(), 1):
            for match in _LITERAL_CALL.finditer(line):
                literals.append((rel, number, match.group(0)))
    return Survey(tuple(reads), tuple(dict.fromkeys(constants)), tuple(literals))


def start_note(task_dir: Path, editable: Sequence[str], seed: str, exact: bool) -> str:
    """What the start of a run (and ``overnight init``) says about seeds: "" when a seed reaches the script
    (``[judge] seed`` named, or a script reads OVERNIGHT_SEED) or the metric is declared exact."""
    if seed or exact:
        return ""
    found = survey(task_dir, [*editable, "*.py"])
    if found.seeded:
        return ""
    lines = [
        "seed: no script of the task reads OVERNIGHT_SEED and [judge] seed is not set. If the script fixes "
        f"its own seed, every run of a commit gives the same value, {NO_SEED_HELP}.",
        *(f"  {line}" for line in found.advice()),
    ]
    return "\n".join(lines)


def unvaried_note(repeats: int) -> str:
    """What every view says once every experiment measured more than once repeated its value exactly
    (``repeats``: the measurements after each experiment's first)."""
    counted = "1 repeated measurement" if repeats == 1 else f"{repeats} repeated measurements"
    return (
        f"every run of a commit has given the same value ({counted}, each equal to its experiment's first): "
        f"the seed does not reach the script, {NO_SEED_HELP}"
    )
