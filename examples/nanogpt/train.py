"""A small byte-level GPT, trained for a fixed time budget (the file the agent edits).

The hyperparameters are the UPPER_CASE constants just below: the `tune` agent changes
them, a coding agent may change anything here. The data and the metric live in
prepare.py, which stays fixed. The run trains until the budget's training share is
spent (env OVERNIGHT_BUDGET_S, default 300 s, counted from when its imports are done;
the time evaluation will take is kept back; at least one step), evaluates on the held-out
bytes and prints the summary block that overnight reads. Seeded from env OVERNIGHT_SEED.
"""

import math
import os
import resource
import sys
import time

import prepare
import torch
import torch.nn as nn
import torch.nn.functional as F

# The budget counts from here: loading Python and PyTorch is the machine's time, not the experiment's
# (seconds on a busy machine), and the harness's hard timeout leaves room for it.
T_START = time.time()

# ---------------------------------------------------------------- hyperparameters
# Model. The width is N_HEAD heads of N_EMBD // N_HEAD dimensions, rounded down to an
# even head size (RoPE rotates pairs), so any combination of the two is valid.
N_LAYER = 4
N_HEAD = 4
N_EMBD = 128
MLP_RATIO = 4  # hidden width of the MLP, in multiples of the model width
BLOCK_SIZE = 128  # context length in bytes (training and evaluation)
ROPE_BASE = 10000.0
TIE_WEIGHTS = True  # the output layer shares the embedding's weights

# Optimization: AdamW; the learning rate warms up, holds, then decays over the last
# COOLDOWN_FRACTION of the training time to MIN_LR_FRACTION of its peak. The schedule
# follows the clock, not a step count, so it fits whatever the budget allows.
BATCH_SIZE = 16  # sequences per step
LEARNING_RATE = 0.003
WEIGHT_DECAY = 0.1
BETA1 = 0.9
BETA2 = 0.95
WARMUP_FRACTION = 0.05
COOLDOWN_FRACTION = 0.5
MIN_LR_FRACTION = 0.1
GRAD_CLIP = 1.0  # max gradient norm; 0 turns clipping off
INIT_STD = 0.02

# ---------------------------------------------------------------- setup
BUDGET_S = float(os.environ.get("OVERNIGHT_BUDGET_S", "300"))
SEED = int(os.environ.get("OVERNIGHT_SEED", "0"))
log_every_s = 5.0

torch.manual_seed(SEED)
if torch.cuda.is_available():
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
else:
    device = torch.device("cpu")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), cpus)))
autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


# ---------------------------------------------------------------- model
def rope_tables(length: int, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)  # (T, head_dim / 2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: (B, H, T, D); rotates the pairs (x[..., :D/2], x[..., D/2:]).
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class RMSNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.size(-1),), self.weight, eps=1e-6)


class Attention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, head_dim: int) -> None:
        super().__init__()
        self.n_head, self.head_dim = n_head, head_dim
        self.qkv = nn.Linear(n_embd, 3 * n_head * head_dim, bias=False)
        self.proj = nn.Linear(n_head * head_dim, n_embd, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, self.n_head * self.head_dim))


class MLP(nn.Module):
    def __init__(self, n_embd: int, hidden: int) -> None:
        super().__init__()
        self.fc = nn.Linear(n_embd, hidden, bias=False)
        self.proj = nn.Linear(hidden, n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, head_dim: int, hidden: int) -> None:
        super().__init__()
        self.norm1, self.attn = RMSNorm(n_embd), Attention(n_embd, n_head, head_dim)
        self.norm2, self.mlp = RMSNorm(n_embd), MLP(n_embd, hidden)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cos, sin)
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        n_head = max(1, N_HEAD)
        head_dim = max(2, (N_EMBD // n_head) // 2 * 2)
        n_embd = n_head * head_dim
        self.block_size = max(1, BLOCK_SIZE)
        self.embed = nn.Embedding(prepare.VOCAB_SIZE, n_embd)
        self.blocks = nn.ModuleList(
            Block(n_embd, n_head, head_dim, max(1, round(MLP_RATIO * n_embd))) for _ in range(max(1, N_LAYER))
        )
        self.norm = RMSNorm(n_embd)
        self.head = nn.Linear(n_embd, prepare.VOCAB_SIZE, bias=False)
        if TIE_WEIGHTS:
            self.head.weight = self.embed.weight
        cos, sin = rope_tables(self.block_size, head_dim, ROPE_BASE)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.apply(self._init)
        for name, p in self.named_parameters():  # residual projections: scaled down with depth
            if name.endswith("proj.weight"):
                nn.init.normal_(p, std=INIT_STD / math.sqrt(2 * len(self.blocks)))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=INIT_STD)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.size(1)
        cos, sin = self.cos[:t], self.sin[:t]
        x = self.embed(idx)
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.head(self.norm(x))


# ---------------------------------------------------------------- data
train_data, _ = prepare.load_data()
generator = torch.Generator().manual_seed(SEED)
offsets = torch.arange(BLOCK_SIZE + 1)


def get_batch() -> tuple[torch.Tensor, torch.Tensor]:
    starts = torch.randint(0, train_data.numel() - BLOCK_SIZE - 1, (BATCH_SIZE, 1), generator=generator)
    chunk = train_data[starts + offsets].long()
    if device.type == "cuda":
        chunk = chunk.pin_memory().to(device, non_blocking=True)
    return chunk[:, :-1], chunk[:, 1:]


# ---------------------------------------------------------------- training
model = GPT().to(device)
num_params = sum(p.numel() for p in model.parameters())
decay = [p for p in model.parameters() if p.dim() >= 2]
no_decay = [p for p in model.parameters() if p.dim() < 2]
optimizer = torch.optim.AdamW(
    [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
    lr=LEARNING_RATE,
    betas=(BETA1, BETA2),
    fused=device.type == "cuda",
)


def lr_at(progress: float) -> float:
    if progress < WARMUP_FRACTION:
        return LEARNING_RATE * (progress + 1e-3) / (WARMUP_FRACTION + 1e-3)
    if progress < 1.0 - COOLDOWN_FRACTION:
        return LEARNING_RATE
    decay_progress = (progress - (1.0 - COOLDOWN_FRACTION)) / max(COOLDOWN_FRACTION, 1e-9)
    return LEARNING_RATE * (1.0 - (1.0 - MIN_LR_FRACTION) * min(1.0, decay_progress))


def sync() -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# The training share: what is left of the budget after startup, less the time the
# evaluation will take (estimated from the median step time: a forward pass costs about
# a third of a training step per token; counted as a half to be safe) and a margin.
startup_s = time.time() - T_START
margin_s = 1.0 + 0.02 * BUDGET_S
train_budget_s = max(0.0, 0.85 * (BUDGET_S - startup_s) - margin_s)  # until the step time is known
tokens_per_step = BATCH_SIZE * BLOCK_SIZE
print(
    f"device {device} | params {num_params / 1e6:.2f}M | threads {torch.get_num_threads()} "
    f"| budget {BUDGET_S:.0f}s | startup {startup_s:.1f}s",
    flush=True,
)

step = 0
step_times: list[float] = []
train_start = time.time()
last_log = train_start
smooth_loss = None
while True:
    elapsed = time.time() - train_start
    if step_times:
        recent = sorted(step_times[-50:] if len(step_times) > 50 else step_times[1:] or step_times)
        step_s = recent[len(recent) // 2]  # the median: steady under a moment's contention
        if len(step_times) >= 5:
            eval_s = 0.5 * step_s * prepare.EVAL_TOKENS / tokens_per_step
            train_budget_s = max(0.0, BUDGET_S - startup_s - eval_s - margin_s)
        if elapsed + step_s > train_budget_s:
            break
    # else: no step measured yet. The first one is taken whatever is left: a model that never trained
    # measures nothing, and its time says how long a step takes.
    progress = min(1.0, elapsed / train_budget_s) if train_budget_s > 0 else 1.0
    lr = lr_at(progress)
    for group in optimizer.param_groups:
        group["lr"] = lr

    t0 = time.time()
    x, y = get_batch()
    with autocast:
        logits = model(x)
    loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1))
    loss.backward()
    if GRAD_CLIP > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    loss_value = loss.item()  # also waits for the device
    step_times.append(time.time() - t0)
    step += 1

    if not math.isfinite(loss_value) or loss_value > 100:
        print(f"FAIL: training diverged at step {step} (loss {loss_value})", flush=True)
        sys.exit(1)
    smooth_loss = loss_value if smooth_loss is None else 0.9 * smooth_loss + 0.1 * loss_value
    if time.time() - last_log >= log_every_s:
        last_log = time.time()
        print(
            f"step {step:05d} | loss {smooth_loss:.4f} | lr {lr:.2e} | {step_times[-1] * 1000:.0f} ms/step "
            f"| {elapsed:.1f}/{train_budget_s:.1f}s",
            flush=True,
        )

sync()
training_seconds = time.time() - train_start

# ---------------------------------------------------------------- evaluation and summary
val_bpb = prepare.evaluate(model, model.block_size, device)
total_seconds = time.time() - T_START
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux, bytes on macOS
peak_memory_mb = peak_kb / (1024 * 1024 if sys.platform == "darwin" else 1024)


def summary(name: str, value: str) -> None:
    print(f"{name + ':':<18}{value}")


print("---")
summary("val_bpb", f"{val_bpb:.6f}")
summary("training_seconds", f"{training_seconds:.1f}")
summary("total_seconds", f"{total_seconds:.1f}")
summary("peak_memory_mb", f"{peak_memory_mb:.1f}")
if device.type == "cuda":
    summary("peak_vram_mb", f"{torch.cuda.max_memory_allocated() / 1024 / 1024:.1f}")
summary("num_steps", f"{step}")
summary("num_params_M", f"{num_params / 1e6:.2f}")
