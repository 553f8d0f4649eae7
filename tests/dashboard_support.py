"""What the dashboard's tests share: a finished run of every outcome, the server on it, HTTP and a browser."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from conftest import AGENT, Repo, git, overnight_process
from overnight.cli import main
from overnight.views.dashboard import DashboardServer, serve

# A task that looks like a small language-model run: knobs in train.py, val_bpb printed at the end
# (with a long training log, so the log tail is cut), and a protected data-preparation script.
TRAIN = """\
import math, os, sys, time
LR = 0.001
WARMUP = 0
DEPTH = 4
WIDTH = 256
NORM = "layernorm"
DROPOUT = 0.1
WEIGHT_DECAY = 0.0
CRASH = 0
SLEEP = 0
NAN = 0
if SLEEP:
    time.sleep(SLEEP)
bpb = (
    1.05
    + 0.06 * math.log10(LR / 0.004) ** 2
    + (0.015 if WARMUP == 0 else 0.0)
    + 0.012 * abs(DEPTH - 7)
    + 0.02 * abs(math.log2(WIDTH / 384))
    + (0.006 if NORM == "layernorm" else 0.0)
    + 0.08 * DROPOUT
    + 0.05 * WEIGHT_DECAY
)
params = DEPTH * 12 * WIDTH * WIDTH / 1e6
print(f"model: {DEPTH} layers, width {WIDTH}, {params:.2f}M parameters, {NORM}")
for step in range(0, 1001, 4):
    lr = LR * min(1.0, (step + 1) / WARMUP) if WARMUP else LR
    loss = bpb * math.log(2) * (1 + 2.2 * math.exp(-step / 180))
    print(f"step {step:5d} | loss {loss:.4f} | lr {lr:.2e} | dt {41.3 + (step % 7) * 0.4:.1f}ms")
    if CRASH and step == 8:
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (64x768 and 256x256)")
print("---")
print(f"val_bpb: {float('nan') if NAN else bpb:.6f}")
print(f"training_seconds: {float(os.environ['OVERNIGHT_BUDGET_S']):.1f}")
print(f"num_params_M: {params:.2f}")
"""

CONFIG = f"""\
[task]
run = "{sys.executable} train.py"
editable = ["train.py"]
budget_s = 1
timeout_s = 2

[metric]
name = "val_bpb"
goal = "min"

[judge]
min_delta = 0.0
exact = true  # the scripted train.py has no randomness: equal repeats are exact
"""

# What the scripted agent does, experiment by experiment.
PLAN: dict[str, list[list[object]]] = {
    "1": [["set", "train.py", "LR", "0.003"], ["print", "Hypothesis: raise the learning rate from 1e-3 to 3e-3"]],
    "2": [
        ["set", "train.py", "WIDTH", "128"],
        ["print", "Hypothesis: halve the width to 128 for more steps"],
        ["print", "Note: a narrower model trains more steps but loses more per step"],
    ],
    "3": [["set", "train.py", "WARMUP", "200"], ["print", "Hypothesis: warm the learning rate up over 200 steps"]],
    "4": [["set", "train.py", "CRASH", "1"], ["print", "Hypothesis: fuse the q, k, v projections into one matmul"]],
    "5": [
        ["set", "train.py", "LR", "0.01"],
        ["print", "Hypothesis: push the learning rate further, to 1e-2"],
        ["print", "Note: 1e-2 overshoots; 3e-3 looks near the best learning rate"],
    ],
    "6": [["set", "train.py", "DEPTH", "6"], ["print", "Hypothesis: deepen the model from 4 to 6 layers"]],
    "7": [["write", "prepare.py", "CACHE = True\n"], ["print", "Hypothesis: cache the tokenized data in prepare.py"]],
    "8": [["set", "train.py", "SLEEP", "30"], ["print", "Hypothesis: train for twice as many steps"]],
    "9": [["set", "train.py", "NORM", '"rmsnorm"'], ["print", "Hypothesis: replace LayerNorm with RMSNorm"]],
    "10": [["set", "train.py", "NAN", "1"], ["print", "Hypothesis: train in bfloat16 autocast"]],
    "11": [["set", "train.py", "WEIGHT_DECAY", "0.1"], ["print", "Hypothesis: add weight decay 0.1 to all weights"]],
    "12": [["set", "train.py", "DROPOUT", "0.0"], ["print", "Hypothesis: drop dropout: the model underfits"]],
}
STATUSES = {
    0: "baseline",
    1: "keep",
    2: "discard",
    3: "keep",
    4: "crash",
    5: "discard",
    6: "keep",
    7: "rejected",
    8: "timeout",
    9: "keep",
    10: "no_metric",
    11: "discard",
    12: "keep",
}


def build_lm_run(folder: Path) -> Repo:
    """A finished run of 12 experiments of every common outcome, in ``folder/repo`` (it takes a few seconds)."""
    path = folder / "repo"
    path.mkdir()
    for args in (
        ("init", "-q", "-b", "main"),
        ("config", "user.email", "test@example.com"),
        ("config", "user.name", "Test"),
        ("config", "commit.gpgsign", "false"),
    ):
        git(path, *args)
    repo = Repo(path)
    repo.write("train.py", TRAIN)
    repo.write("prepare.py", "CACHE = False\n")
    repo.write("overnight.toml", CONFIG)
    repo.write("program.md", "Lower val_bpb.\n")
    repo.commit("task")
    plan = path.parent / "plan.json"
    plan.write_text(json.dumps(PLAN))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAKE_PLAN", str(plan))
        code = main(["run", str(path), "--tag", "lm", "--agent-command", AGENT, "--max-experiments", "12"])
    assert code == 0
    return repo


@contextmanager
def running(directory: Path, tag: str | None) -> Iterator[DashboardServer]:
    """The dashboard on a free port, answering from a thread."""
    server = serve(directory, tag, port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def request(server: DashboardServer, path: str, method: str = "GET", headers: dict[str, str] | None = None):
    """(status, headers, body) of one request; the body parsed when it is JSON."""
    req = urllib.request.Request(server.url.rstrip("/") + path, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            status, head, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        status, head, raw = err.code, err.headers, err.read()
    body: Any = json.loads(raw) if raw and head.get("Content-Type", "").startswith("application/json") else raw
    return status, head, body


def get(server: DashboardServer, path: str) -> Any:
    status, _, body = request(server, path)
    assert status == 200, body
    return body


def finite(value: Any) -> Any:
    """NaN and infinities as the API sends them (JSON has none): null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


@contextmanager
def in_progress(task: Repo, plan, tmp_path: Path) -> Iterator[tuple[DashboardServer, Callable[[], None]]]:
    """A run in another process, its experiment 1 held in the agent until ``finish()``; the dashboard on it."""
    go = tmp_path / "go"
    wait = f'{sys.executable} -c "import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.05)"'
    plan({"1": [["shell", wait], ["set", "train.py", "X", "4"], ["print", "Hypothesis: four"]]})
    proc = overnight_process("run", task.path, "--tag", "live", "--agent-command", AGENT, "--max-experiments", "1")

    def finish() -> None:
        go.touch()
        _, err = proc.communicate(timeout=600)  # generous: CI runs this with both cores hogged
        assert proc.returncode == 0, err

    try:
        with running(task.path, "live") as server:
            deadline = time.monotonic() + 600  # the run's start-up on a busy machine
            while True:
                status, _, run = request(server, "/api/run")
                rows = get(server, "/api/experiments") if status == 200 else []
                if status == 200 and run["running"] and [r["status"] for r in rows] == ["baseline", "running"]:
                    break
                assert time.monotonic() < deadline, (status, run)
                time.sleep(0.1)
            yield server, finish
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@contextmanager
def open_page() -> Iterator[Any]:
    """A page of a headless Chromium (the test is skipped without Playwright or Chromium)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1500}, color_scheme="light")
            yield page
        finally:
            browser.close()
