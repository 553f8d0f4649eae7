"""The data and the evaluation (protected: the agent must not change this file).

The corpus needs no download: it is the running Python's own standard library, the
``*.py`` files under ``sysconfig.get_paths()["stdlib"]`` in sorted order (tests,
site-packages and build-specific files left out), concatenated and cut to
``CORPUS_BYTES``. Tokens are bytes (vocabulary 256). The last ``VAL_BYTES`` bytes are
held out for validation and never trained on; the first ``EVAL_TOKENS`` of them (plus
one byte of lookahead) are what ``evaluate`` scores, every byte exactly once, in the
same order on every call. The same Python on the same machine gives the same corpus:
``corpus_checksum()`` and ``val_checksum()`` name it. Numbers from different Python
versions are not comparable.

``python prepare.py`` prints a description of the data.
"""

from __future__ import annotations

import hashlib
import math
import os
import sysconfig
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

VOCAB_SIZE = 256  # byte-level tokens
CORPUS_BYTES = 16 * 1024 * 1024  # at most this much of the standard library
MIN_CORPUS_BYTES = 2 * 1024 * 1024  # refuse to run on less
VAL_BYTES = 256 * 1024  # the held-out tail of the corpus
EVAL_TOKENS = 64 * 1024  # bytes scored by evaluate(): a few seconds for a small model on a CPU
EVAL_BATCH_TOKENS = 16 * 1024  # tokens per forward pass in evaluate() (memory, not the result)

_SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"}


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def corpus_files() -> list[Path]:
    """The standard library's ``*.py`` files, in a fixed order (sorted relative paths)."""
    root = stdlib_root()
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):  # symlinks to folders are not followed
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("config-")]
        rel = Path(dirpath).relative_to(root)
        for name in filenames:
            if name.endswith(".py") and not name.startswith("_sysconfigdata"):
                found.append((rel / name).as_posix())
    return [root / rel for rel in sorted(found)]


@lru_cache(maxsize=1)
def corpus_bytes() -> bytes:
    """The whole corpus: the files above, concatenated, cut to ``CORPUS_BYTES``."""
    parts: list[bytes] = []
    size = 0
    for path in corpus_files():
        data = path.read_bytes()
        parts.append(data)
        size += len(data)
        if size >= CORPUS_BYTES:
            break
    corpus = b"".join(parts)[:CORPUS_BYTES]
    if len(corpus) < MIN_CORPUS_BYTES:
        raise RuntimeError(
            f"only {len(corpus)} bytes of standard-library source under {stdlib_root()}; need {MIN_CORPUS_BYTES}"
        )
    return corpus


def corpus_checksum() -> str:
    return hashlib.sha256(corpus_bytes()).hexdigest()


def val_bytes() -> bytes:
    """The held-out validation bytes: the corpus's last ``VAL_BYTES``."""
    return corpus_bytes()[-VAL_BYTES:]


def val_checksum() -> str:
    return hashlib.sha256(val_bytes()).hexdigest()


def _tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def load_data() -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, val)`` as uint8 tensors of byte tokens; they do not overlap."""
    corpus = corpus_bytes()
    return _tensor(corpus[:-VAL_BYTES]), _tensor(corpus[-VAL_BYTES:])


@torch.no_grad()
def evaluate(model: torch.nn.Module, block_size: int, device: str | torch.device = "cpu") -> float:
    """Validation bits per byte of ``model`` on the fixed held-out bytes.

    ``model(idx)`` takes a ``(B, T)`` long tensor of bytes with ``T <= block_size`` and
    returns ``(B, T, VOCAB_SIZE)`` logits, position t predicting byte t + 1. The first
    ``EVAL_TOKENS + 1`` validation bytes are cut into consecutive windows of
    ``block_size`` inputs (the last one may be shorter); every one of the
    ``EVAL_TOKENS`` targets is scored exactly once, with the context its window gives.
    On CUDA the forward pass runs under bf16 autocast; the loss is summed in float64.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be at least 1, got {block_size}")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    tokens = _tensor(val_bytes()[: EVAL_TOKENS + 1]).long()
    starts = list(range(0, EVAL_TOKENS, block_size))
    per_batch = max(1, EVAL_BATCH_TOKENS // block_size)
    total_nats = 0.0
    scored = 0
    try:
        for i in range(0, len(starts), per_batch):
            group = starts[i : i + per_batch]
            # Full windows go together; a short last window gets its own batch.
            for same_length in _by_length(group, block_size):
                length = min(block_size, EVAL_TOKENS - same_length[0])
                x = torch.stack([tokens[s : s + length] for s in same_length]).to(device)
                y = torch.stack([tokens[s + 1 : s + 1 + length] for s in same_length]).to(device)
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    logits = model(x)
                losses = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1), reduction="none")
                total_nats += losses.double().sum().item()
                scored += y.numel()
    finally:
        model.train(was_training)
    assert scored == EVAL_TOKENS, (scored, EVAL_TOKENS)
    return total_nats / (math.log(2) * EVAL_TOKENS)


def _by_length(starts: list[int], block_size: int) -> list[list[int]]:
    full = [s for s in starts if s + block_size <= EVAL_TOKENS]
    short = [s for s in starts if s + block_size > EVAL_TOKENS]
    return [g for g in (full, short) if g]


if __name__ == "__main__":
    train, val = load_data()
    print(f"stdlib:          {stdlib_root()}")
    print(f"files:           {len(corpus_files())}")
    print(f"corpus_bytes:    {len(corpus_bytes())} (at most {CORPUS_BYTES})")
    print(f"train_bytes:     {train.numel()}")
    print(f"val_bytes:       {val.numel()}")
    print(f"eval_tokens:     {EVAL_TOKENS}")
    print(f"corpus_sha256:   {corpus_checksum()}")
    print(f"val_sha256:      {val_checksum()}")
