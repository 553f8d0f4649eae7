"""The task of `benchmarks/seeded.py`: a numpy MLP on scikit-learn's digits with `SEED = 42` in its code.

`TRAIN` is its `train.py`; `PROPOSALS` the 20 changes an agent proposes in a night (12 re-rolls of
the random stream, 4 real improvements, 4 real harms), each a function of the current text, so
that it applies to the best as it stands whatever was kept before. `propose` is the agent's body;
`val_loss` runs a text in this process with SEED rewritten to a given seed (calibration and the
fresh-seed measurements).
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TRAIN = """\
\"\"\"A one-hidden-layer MLP on scikit-learn's digits (saved to digits.npz), trained by minibatch SGD.\"\"\"

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

SEED = 42
HIDDEN = 128
EPOCHS = 40
BATCH = 16
LR = 0.01
MOMENTUM = 0.9
TRAIN_SHARE = 0.5  # share of the training split used
WRONG_LOW = 0.04  # share of the training labels 0-4 replaced by wrong ones (the same ones whatever SEED)
WRONG_HIGH = 0.07  # and of 5-9
SMOOTHING = 0.0  # label smoothing of the training targets
TEMPERATURE = 1.0  # the logits are divided by this at evaluation
STANDARDIZE = False  # inputs to zero mean and unit variance (statistics of the training split)

data = np.load("digits.npz")
x, y = data["x"] / 16.0, data["y"].astype(np.int64)
split = np.random.default_rng(0).permutation(len(y))  # the fixed split: 500 for validation
val, train = split[:500], split[500:]
train = train[: int(len(train) * TRAIN_SHARE)]
if STANDARDIZE:
    x = (x - x[train].mean(axis=0)) / (x[train].std(axis=0) + 0.1)
wrong = np.random.default_rng(1).random(len(y)) < np.where(y < 5, WRONG_LOW, WRONG_HIGH)
labels = np.where(wrong, (y + np.random.default_rng(2).integers(1, 10, len(y))) % 10, y)
targets = np.eye(10)[labels] * (1 - SMOOTHING) + SMOOTHING / 10

rng = np.random.default_rng(SEED)
W1 = rng.standard_normal((64, HIDDEN)) * np.sqrt(2 / 64)
W2 = rng.standard_normal((HIDDEN, 10)) / np.sqrt(HIDDEN)
b1, b2 = np.zeros(HIDDEN), np.zeros(10)
params = [W1, b1, W2, b2]
velocity = [np.zeros_like(p) for p in params]

for epoch in range(EPOCHS):
    order = rng.permutation(train)
    for start in range(0, len(order), BATCH):
        batch = order[start : start + BATCH]
        xb = x[batch]
        h = np.maximum(xb @ W1 + b1, 0.0)
        logits = h @ W2 + b2
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        d2 = (p - targets[batch]) / len(batch)
        dh = (d2 @ W2.T) * (h > 0)
        grads = [xb.T @ dh, dh.sum(axis=0), h.T @ d2, d2.sum(axis=0)]
        for param, grad, v in zip(params, grads, velocity):
            v *= MOMENTUM
            v += grad
            param -= LR * v

logits = (np.maximum(x[val] @ W1 + b1, 0.0) @ W2 + b2) / TEMPERATURE
logits -= logits.max(axis=1, keepdims=True)
log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
print(f"val_loss: {-log_p[np.arange(len(val)), y[val]].mean():.6f}")
"""


def digits_npz(path: Path) -> None:
    """scikit-learn's digits (ships with it, no download), saved for train.py: importing sklearn takes a second."""
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    np.savez_compressed(path, x=digits.data.astype(np.uint8), y=digits.target.astype(np.uint8))


def constant(name: str, value: Callable[[str], str]) -> Callable[[str], str]:
    """An edit that rewrites the module-level constant `name` to value(its current text)."""

    def edit(text: str) -> str:
        found = re.search(rf"^{name} = (\S+)", text, re.M)
        assert found, f"no {name} in train.py"
        return text[: found.start(1)] + value(found.group(1)) + text[found.end(1) :]

    return edit


def after(pattern: str, line: str) -> Callable[[str], str]:
    """An edit that inserts `line` after the first line matching `pattern`, with that line's indentation."""

    def edit(text: str) -> str:
        found = re.search(rf"^([ ]*){pattern}.*\n", text, re.M)
        assert found, f"no line {pattern!r} in train.py"
        return text[: found.end()] + found.group(1) + line + "\n" + text[found.end() :]

    return edit


def replace(pattern: str, new: str) -> Callable[[str], str]:
    """An edit that replaces the first match of `pattern` (a regular expression, multiline) by `new`."""

    def edit(text: str) -> str:
        changed = re.sub(pattern, new, text, count=1, flags=re.M)
        assert changed != text, f"{pattern!r} did not change train.py"
        return changed

    return edit


def swap_init(text: str) -> str:
    """W2 drawn before W1: the same distribution, another stream."""
    w1 = re.search(r"^W1 = .*\n", text, re.M)
    w2 = re.search(r"^W2 = .*\n", text, re.M)
    assert w1 and w2 and w1.end() == w2.start(), "W1 and W2 not on consecutive lines"
    return text[: w1.start()] + w2.group(0) + w1.group(0) + text[w2.end() :]


def dropout0(text: str) -> str:
    """A dropout mask with rate 0.0 on the hidden layer: nothing dropped, but a draw per step."""
    text = after(r"HIDDEN = ", "DROPOUT = 0.0  # dropout rate of the hidden layer")(text)
    mask = "h = h * (rng.random(h.shape) >= DROPOUT) / (1 - DROPOUT)"
    return after(r"h = np\.maximum\(xb @ W1", mask)(text)


@dataclass(frozen=True)
class Proposal:
    kind: str  # "re-roll", "improvement" or "harm"
    name: str
    edit: Callable[[str], str]


def _times(factor: float, digits: int = 6) -> Callable[[str], str]:
    return lambda old: repr(round(float(old) * factor, digits))


PROPOSALS = [
    Proposal("re-roll", "SEED = 7", constant("SEED", lambda _: "7")),
    Proposal("re-roll", "SEED = 2026", constant("SEED", lambda _: "2026")),
    Proposal("re-roll", "SEED = 12345", constant("SEED", lambda _: "12345")),
    Proposal("re-roll", "one extra draw before training", after(r"rng = ", "rng.random()  # one extra draw")),
    Proposal("re-roll", "100 draws skipped", after(r"rng = ", "rng.integers(0, 2, 100)  # 100 draws skipped")),
    Proposal("re-roll", "W2 initialised before W1", swap_init),
    Proposal("re-roll", "dropout mask at rate 0.0", dropout0),
    Proposal("re-roll", "PCG64DXSM generator", replace(r"^rng = .*$", "rng = np.random.Generator(np.random.PCG64DXSM(SEED))")),
    Proposal("re-roll", "Philox generator", replace(r"^rng = .*$", "rng = np.random.Generator(np.random.Philox(SEED))")),
    Proposal("re-roll", "a spawned child seed", replace(r"^rng = .*$", "rng = np.random.default_rng(np.random.SeedSequence(SEED).spawn(1)[0])")),
    Proposal("re-roll", "own stream for the batch order",
             lambda t: after(r"rng = ", "order_rng = np.random.default_rng([SEED, 1])")(
                 replace(r"\brng\.permutation\(train\)", "order_rng.permutation(train)")(t))),
    Proposal("re-roll", "batch order reversed", replace(r"(permutation\(train\))$", r"\1[::-1]")),
    Proposal("improvement", "inputs standardized", constant("STANDARDIZE", lambda _: "True")),
    Proposal("improvement", "wrong labels of 0-4 cleaned", constant("WRONG_LOW", lambda _: "0.0")),
    Proposal("improvement", "wrong labels of 5-9 cleaned", constant("WRONG_HIGH", lambda _: "0.0")),
    Proposal("improvement", "the whole training split", constant("TRAIN_SHARE", lambda _: "1.0")),
    Proposal("harm", "hidden layer a quarter as wide", constant("HIDDEN", lambda old: str(int(old) // 4))),
    Proposal("harm", "3% more wrong labels of 5-9", constant("WRONG_HIGH", lambda old: repr(round(float(old) + 0.03, 6)))),
    Proposal("harm", "2% more wrong labels of 0-4", constant("WRONG_LOW", lambda old: repr(round(float(old) + 0.02, 6)))),
    Proposal("harm", "4/5 of the training data", constant("TRAIN_SHARE", lambda old: repr(round(float(old) * 0.8, 6)))),
]  # fmt: skip


def night_order(seed: int) -> list[int]:
    """The night's proposals, as indexes into PROPOSALS, in an order shuffled by the night's seed."""
    order = list(range(len(PROPOSALS)))
    random.Random(seed).shuffle(order)
    return order


def propose(experiment: int, night_seed: int, path: Path = Path("train.py")) -> None:
    """The command agent: the night's `experiment`-th proposal (from 1) applied to train.py, and its hypothesis."""
    proposal = PROPOSALS[night_order(night_seed)[(experiment - 1) % len(PROPOSALS)]]
    path.write_text(proposal.edit(path.read_text()))
    print(f"Hypothesis: {proposal.kind}: {proposal.name}")


def with_seed(text: str, seed: int) -> str:
    """`text` with SEED rewritten to `seed`, as `[judge] seed = "SEED"` has the harness do."""
    return re.sub(r"^SEED = .*$", f"SEED = {seed}", text, count=1, flags=re.M)


def val_loss(text: str, seed: int, folder: Path) -> float:
    """The val_loss that `text` prints with SEED = seed, run in this process from `folder` (holding digits.npz)."""
    out, here = io.StringIO(), Path.cwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(with_seed(text, seed), "train.py", "exec"), {"__name__": "__main__"})
    finally:
        os.chdir(here)
    found = re.search(r"val_loss: (\S+)", out.getvalue())
    assert found, out.getvalue()
    return float(found.group(1))
