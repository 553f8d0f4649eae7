"""Data and evaluation for tinylm (protected: the agent may not change this file).

The corpus needs no download: it is the running Python's own standard-library
sources, read in a fixed order, so it is the same bytes on every run of a machine.
The last tenth is held out; validation bits per byte are always computed on the
same VAL_BYTES bytes of it, from the model's logits, normalized here.
"""

from __future__ import annotations

import hashlib
import sysconfig
from collections.abc import Callable
from pathlib import Path

import numpy as np

CORPUS_BYTES = 4_000_000
VAL_FRACTION = 0.1
VAL_BYTES = 100_000  # the evaluation: always these bytes
EVAL_CHUNK = 10_000


def corpus() -> bytes:
    """The standard library's top-level .py files, sorted by name, concatenated, cut to CORPUS_BYTES."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    parts, size = [], 0
    for path in sorted(stdlib.glob("*.py")):
        data = path.read_bytes()
        parts.append(data)
        size += len(data)
        if size >= CORPUS_BYTES:
            break
    return b"".join(parts)[:CORPUS_BYTES]


def split() -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) as uint8 arrays; validation is the held-out tail."""
    data = np.frombuffer(corpus(), dtype=np.uint8)
    cut = int(len(data) * (1 - VAL_FRACTION))
    return data[:cut], data[cut:]


def fingerprint(data: np.ndarray) -> str:
    return hashlib.sha256(data.tobytes()).hexdigest()[:16]


def contexts(data: np.ndarray, positions: np.ndarray, context: int) -> np.ndarray:
    """For each position, the `context` bytes before it (zero-padded at the start)."""
    padded = np.concatenate([np.zeros(context, dtype=np.uint8), data])
    index = positions[:, None] + np.arange(context)[None, :]
    return padded[index]


def evaluate(logits_fn: Callable[[np.ndarray], np.ndarray], context: int) -> float:
    """Validation bits per byte of a model: ``logits_fn(contexts) -> (n, 256) logits``."""
    _, val = split()
    val = val[:VAL_BYTES]
    total_nats = 0.0
    for start in range(0, len(val), EVAL_CHUNK):
        positions = np.arange(start, min(start + EVAL_CHUNK, len(val)))
        logits = np.asarray(logits_fn(contexts(val, positions, context)), dtype=np.float64)
        if logits.shape != (len(positions), 256) or not np.all(np.isfinite(logits)):
            return float("nan")
        logits -= logits.max(axis=1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        total_nats -= log_probs[np.arange(len(positions)), val[positions]].sum()
    return total_nats / len(val) / np.log(2)
