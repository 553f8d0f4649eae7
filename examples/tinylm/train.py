"""tinylm: a byte-level neural language model in numpy, trained for a fixed time budget.

The agent edits this file. The model reads the CONTEXT bytes before a position,
embeds each, passes the concatenation through one hidden layer and predicts the
next byte. Adam, warmup and a linear decay over the budget. prepare.py holds
the data and the evaluation; this file ends with the summary block the harness reads.

The budget is OVERNIGHT_BUDGET_S seconds, or, with ``--bytes N`` (what `overnight demo`
runs), a fixed amount of work: N training bytes, in N / BATCH_SIZE steps, however slow or
busy the machine. A busy machine then makes a run take longer, never learn less.
"""

import argparse
import os
import resource
import time

import numpy as np
import prepare

LEARNING_RATE = 0.001
BATCH_SIZE = 64
CONTEXT = 6
EMBED_DIM = 16
HIDDEN_DIM = 128
WEIGHT_DECAY = 0.0
WARMUP_FRACTION = 0.05
BETA2 = 0.99
INIT_SCALE = 1.0
TRAIN_FRACTION = 0.85  # of the time budget; the rest is for the evaluation

started = time.time()
parser = argparse.ArgumentParser(description="train tinylm; print the summary block")
parser.add_argument("--bytes", type=int, default=0, help="train on this many bytes instead of for a time budget")
budget = float(os.environ.get("OVERNIGHT_BUDGET_S", "30"))
budget_bytes = parser.parse_args().bytes
rng = np.random.default_rng(int(os.environ.get("OVERNIGHT_SEED", "0")))
train, _ = prepare.split()


def init(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    return (rng.standard_normal(shape) * INIT_SCALE / np.sqrt(fan_in)).astype(np.float32)


params = {
    "embed": init((256, EMBED_DIM), 1),
    "w1": init((CONTEXT * EMBED_DIM, HIDDEN_DIM), CONTEXT * EMBED_DIM),
    "b1": np.zeros(HIDDEN_DIM, dtype=np.float32),
    "w2": init((HIDDEN_DIM, 256), HIDDEN_DIM),
    "b2": np.zeros(256, dtype=np.float32),
}
moments = {k: (np.zeros_like(v), np.zeros_like(v)) for k, v in params.items()}


def forward(ctx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = params["embed"][ctx].reshape(len(ctx), -1)
    h = np.tanh(x @ params["w1"] + params["b1"])
    return x, h, h @ params["w2"] + params["b2"]


def logits_of(ctx: np.ndarray) -> np.ndarray:
    return forward(ctx)[2]


def step(ctx: np.ndarray, target: np.ndarray, lr: float, t: int) -> float:
    x, h, logits = forward(ctx)
    logits = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    n = len(target)
    loss = -np.log(probs[np.arange(n), target] + 1e-12).mean()
    d_logits = probs
    d_logits[np.arange(n), target] -= 1
    d_logits /= n
    grads = {"w2": h.T @ d_logits, "b2": d_logits.sum(axis=0)}
    d_h = (d_logits @ params["w2"].T) * (1 - h * h)
    grads["w1"] = x.T @ d_h
    grads["b1"] = d_h.sum(axis=0)
    d_x = (d_h @ params["w1"].T).reshape(n, CONTEXT, EMBED_DIM)
    grads["embed"] = np.zeros_like(params["embed"])
    np.add.at(grads["embed"], ctx, d_x)
    for name, grad in grads.items():
        m, v = moments[name]
        m *= 0.9
        m += 0.1 * grad
        v *= BETA2
        v += (1 - BETA2) * grad * grad
        m_hat = m / (1 - 0.9**t)
        v_hat = v / (1 - BETA2**t)
        params[name] -= lr * (m_hat / (np.sqrt(v_hat) + 1e-8) + WEIGHT_DECAY * params[name])
    return float(loss)


train_seconds = budget * TRAIN_FRACTION
total_steps = max(1, budget_bytes // BATCH_SIZE) if budget_bytes > 0 else 0
steps = 0
train_start = time.time()
while (progress := steps / total_steps if total_steps else (time.time() - train_start) / train_seconds) < 1:
    warm = min(1.0, progress / WARMUP_FRACTION) if WARMUP_FRACTION > 0 else 1.0
    lr = LEARNING_RATE * warm * (1 - progress)
    positions = rng.integers(0, len(train), BATCH_SIZE)
    loss = step(prepare.contexts(train, positions, CONTEXT), train[positions], lr, steps + 1)
    steps += 1
training_seconds = time.time() - train_start

val_bpb = prepare.evaluate(logits_of, CONTEXT)
num_params = sum(p.size for p in params.values())
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("---")
print(f"val_bpb:          {val_bpb:.6f}")
print(f"training_seconds: {training_seconds:.1f}")
print(f"total_seconds:    {time.time() - started:.1f}")
print(f"peak_memory_mb:   {peak_mb:.1f}")
print(f"num_steps:        {steps}")
print(f"num_params_M:     {num_params / 1e6:.3f}")
