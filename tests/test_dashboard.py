"""`overnight dashboard`: the read-only web page of a run, its JSON API, and the page in a real browser."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from conftest import AGENT, Repo, git, overnight_process
from overnight import views, workspace
from overnight.cli import main
from overnight.dashboard import DashboardServer, serve
from overnight.dashboard.server import experiment_detail, run_summary
from overnight.errors import ConfigError, GitError, RunStateError
from overnight.run import RunPaths
from overnight.views import tail

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
"""

# What the scripted agent does, experiment by experiment.
PLAN: dict[str, list[list[object]]] = {
    "1": [["set", "train.py", "LR", "0.003"], ["print", "Hypothesis: raise the learning rate from 1e-3 to 3e-3"]],
    "2": [["set", "train.py", "WIDTH", "128"], ["print", "Hypothesis: halve the width to 128 for more steps"]],
    "3": [["set", "train.py", "WARMUP", "200"], ["print", "Hypothesis: warm the learning rate up over 200 steps"]],
    "4": [["set", "train.py", "CRASH", "1"], ["print", "Hypothesis: fuse the q, k, v projections into one matmul"]],
    "5": [["set", "train.py", "LR", "0.01"], ["print", "Hypothesis: push the learning rate further, to 1e-2"]],
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


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    """A finished run of 12 experiments of every common outcome (built once: it takes a few seconds)."""
    path = tmp_path_factory.mktemp("dashboard") / "repo"
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


@pytest.fixture(scope="module")
def server(lm_run: Repo) -> Iterator[DashboardServer]:
    with running(lm_run.path, None) as server:
        yield server


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


def test_the_run_has_every_outcome(lm_run: Repo) -> None:
    view = views.load_view(lm_run.path, "lm")
    assert {e.id: e.status.value for e in view.experiments} == STATUSES


def test_page_and_its_files(server: DashboardServer) -> None:
    status, head, body = request(server, "/")
    assert status == 200 and head["Content-Type"].startswith("text/html")
    assert b'<div id="chart">' in body and b'<table id="experiments">' in body and b'src="app.js"' in body
    for path, kind in (("/app.js", "text/javascript"), ("/style.css", "text/css")):
        status, head, body = request(server, path)
        assert status == 200 and head["Content-Type"].startswith(kind) and len(body) > 1000
    status, head, body = request(server, "/api/run", "HEAD")
    assert status == 200 and body == b"" and int(head["Content-Length"]) > 0
    assert "default-src 'self'" in head["Content-Security-Policy"]  # no CDN, no network


def test_run_summary_matches_the_ledger(server: DashboardServer, lm_run: Repo) -> None:
    view = views.load_view(lm_run.path, "lm")
    run = get(server, "/api/run")
    assert run["tag"] == "lm" and run["branch"] == "overnight/lm" and run["task"] == "."
    assert run["metric"] == "val_bpb" and run["goal"] == "min" and run["running"] is False
    assert run["baseline"]["id"] == 0 and run["baseline"]["metric"] == view.experiments[0].metric
    assert run["best"]["id"] == 12 and run["best"]["metric"] == pytest.approx(1.0746, abs=1e-3)
    assert run["best"]["metric"] == view.get(12).metric
    assert run["counts"] == dict(Counter(STATUSES.values()))
    assert run["experiments"] == 13 and run["last"] == 12
    assert run["tokens"] == 0 and run["cost_usd"] is None  # the command agent reports no usage
    assert run["start_commit"] == lm_run.git("rev-parse", "main").strip()


def test_experiments_match_the_ledger(server: DashboardServer, lm_run: Repo) -> None:
    view = views.load_view(lm_run.path, "lm")
    rows = get(server, "/api/experiments")
    assert [r["id"] for r in rows] == list(range(13))
    for row, exp in zip(rows, view.experiments, strict=True):
        expected = finite(exp.to_json())
        assert {k: row[k] for k in expected} == expected
    assert rows[10]["metric"] is None and rows[10]["reason"] == "val_bpb in the output is nan"
    assert rows[1]["delta"] == pytest.approx(rows[1]["metric"] - rows[0]["metric"])
    assert rows[2]["parent_metric"] == rows[1]["metric"] and rows[2]["delta"] > 0
    assert rows[0]["delta"] is None and rows[4]["delta"] is None


def test_one_experiment_with_its_diff_measurements_and_logs(server: DashboardServer, lm_run: Repo) -> None:
    view = views.load_view(lm_run.path, "lm")
    one = get(server, "/api/experiments/1")
    assert one["status"] == "keep" and one["hypothesis"] == "raise the learning rate from 1e-3 to 3e-3"
    assert one["diff_source"] == "commit" and "-LR = 0.001\n+LR = 0.003" in one["diff"]
    assert one["diff"] == lm_run.git("diff", "--no-color", one["parent"], one["commit"])
    assert len(one["measurements"]) == one["runs"] == 2
    assert [m["value"] for m in one["measurements"]] == [m.value for m in view.measurements[1]]
    log = one["logs"]["experiment"]
    assert log["exists"] and log["lines"] == 200 and log["truncated"]  # the log has ~260 lines
    assert log["text"].splitlines()[-3].startswith("val_bpb: ")  # its last measurement: the best's, again
    assert log["text"].splitlines() == view.paths.log(1).read_text().splitlines()[-200:]
    agent = one["logs"]["agent"]
    assert agent["exists"] and "Hypothesis: raise the learning rate" in agent["text"] and not agent["truncated"]
    crash = get(server, "/api/experiments/4")
    assert "RuntimeError: mat1 and mat2 shapes" in crash["logs"]["experiment"]["text"] and crash["exit_code"] == 1


def test_a_rejected_experiment_shows_its_saved_diff(server: DashboardServer, lm_run: Repo) -> None:
    rejected = get(server, "/api/experiments/7")
    assert rejected["status"] == "rejected" and "prepare.py" in rejected["reason"]
    assert rejected["diff_source"] == "saved" and rejected["commit"] == ""
    assert "-CACHE = False\n+CACHE = True" in rejected["diff"]
    assert rejected["diff"] == views.load_view(lm_run.path, "lm").paths.diff(7).read_text()


def test_without_its_commit_an_experiment_shows_the_saved_diff(lm_run: Repo, tmp_path: Path) -> None:
    view = views.load_view(lm_run.path, "lm")
    exps = [dataclasses.replace(e, commit="0" * 40) if e.id == 1 else e for e in view.experiments]
    gone = dataclasses.replace(view, experiments=exps, paths=RunPaths(tmp_path))  # logs in tmp_path
    bare = experiment_detail(gone, 1)
    assert bare["diff"] == "" and bare["diff_source"] == "" and "0000000000" in bare["diff_error"]
    gone.paths.diff(1).parent.mkdir()
    gone.paths.diff(1).write_text("+LR = 0.003\n")
    saved = experiment_detail(gone, 1)
    assert saved["diff"] == "+LR = 0.003\n" and saved["diff_source"] == "saved" and saved["diff_error"]


def test_the_summary_adds_up_what_the_agents_spent(lm_run: Repo) -> None:
    view = views.load_view(lm_run.path, "lm")
    spent = {1: (100, 10, None), 2: (200, 20, 0.5)}
    exps = [dataclasses.replace(e, tokens_in=spent[e.id][0], tokens_out=spent[e.id][1], cost_usd=spent[e.id][2])
            if e.id in spent else e for e in view.experiments]  # fmt: skip
    run = run_summary(dataclasses.replace(view, experiments=exps))
    assert (run["tokens_in"], run["tokens_out"], run["tokens"], run["cost_usd"]) == (300, 30, 330, 0.5)


def test_state_is_the_summary_and_the_experiments_in_one(server: DashboardServer) -> None:
    assert get(server, "/api/state") == {"run": get(server, "/api/run"), "experiments": get(server, "/api/experiments")}


def test_requests_do_not_look_for_the_repository_again(server: DashboardServer, monkeypatch) -> None:
    def no_git(*args: object, **kwargs: object) -> None:
        raise AssertionError("located again")

    monkeypatch.setattr(views, "locate", no_git)
    monkeypatch.setattr(workspace, "repo_root", no_git)
    for path in ("/api/state", "/api/run", "/api/experiments", "/api/experiments/1"):
        assert request(server, path)[0] == 200, path


def test_unknown_paths_and_methods(server: DashboardServer) -> None:
    for path in ("/api/experiments/99", "/api/experiments/x", "/api/nothing", "/../ledger.db", "/app.js/"):
        status, head, body = request(server, path)
        assert status == 404 and head["Content-Type"] == "application/json" and body["error"], path
    assert "has no experiment 99" in request(server, "/api/experiments/99")[2]["error"]
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        status, head, body = request(server, "/api/run", method)
        assert status == 405 and head["Allow"] == "GET, HEAD" and "read-only" in body["error"]
    # A page elsewhere that points a name of its own at 127.0.0.1 (DNS rebinding) gets nothing.
    status, _, body = request(server, "/api/run", headers={"Host": "evil.example:80"})
    assert status == 403 and "localhost" in body["error"]
    assert request(server, "/api/run", headers={"Host": "localhost:1"})[0] == 200


def test_binds_localhost_by_default(server: DashboardServer) -> None:
    assert server.server_address[0] == "127.0.0.1" and server.url.startswith("http://127.0.0.1:")
    assert server.server_address[1] != 0


def _state(repo: Repo) -> dict[str, str]:
    """A digest of everything a reader could change: the run folder's files and every git ref."""
    run_dir = repo.path / ".overnight" / "lm"
    files = {
        str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))  # SQLite's own scratch files
    }
    return {"files": json.dumps(files), "refs": repo.git("for-each-ref"), "status": repo.git("status", "--porcelain")}


def test_never_writes(server: DashboardServer, lm_run: Repo) -> None:
    before = _state(lm_run)
    for path in ("/", "/api/run", "/api/experiments", *(f"/api/experiments/{i}" for i in range(13))):
        get(server, path)
    request(server, "/api/run", "POST")
    assert _state(lm_run) == before


def test_the_page_follows_new_experiments_and_runs(task: Repo, plan, cli) -> None:
    plan(
        {
            "1": [["set", "train.py", "X", "5"], ["print", "Hypothesis: closer to three"]],
            "2": [["set", "train.py", "X", "4"], ["print", "Hypothesis: closer still"]],
        }
    )
    with running(task.path, None) as server:
        status, _, body = request(server, "/api/run")
        assert status == 404 and "no runs of the task" in body["error"]  # before any run: waits
        assert cli("run", task.path, "--tag", "a", "--agent-command", AGENT, "--max-experiments", "1").code == 0
        assert [r["status"] for r in get(server, "/api/experiments")] == ["baseline", "keep"]
        assert cli("run", task.path, "--tag", "a", "--agent-command", AGENT, "--max-experiments", "1").code == 0
        rows = get(server, "/api/experiments")
        assert [(r["id"], r["status"], r["metric"]) for r in rows] == [
            (0, "baseline", 50),
            (1, "keep", 5),
            (2, "keep", 2),
        ]
        run = get(server, "/api/run")
        assert run["tag"] == "a" and run["best"]["id"] == 2 and run["best"]["metric"] == 2 and run["last"] == 2
        # No --tag: the most recent run of the task, looked up on every request.
        plan({"*": []})
        assert cli("run", task.path, "--tag", "b", "--agent-command", AGENT, "--max-experiments", "1").code == 0
        assert get(server, "/api/run")["tag"] == "b"
        assert [r["status"] for r in get(server, "/api/experiments")] == ["baseline", "no_change"]
    with running(task.path, "a") as pinned:
        assert get(pinned, "/api/run")["tag"] == "a"


@contextmanager
def in_progress(task: Repo, plan, tmp_path: Path) -> Iterator[tuple[DashboardServer, Callable[[], None]]]:
    """A run in another process, its experiment 1 held in the agent until ``finish()``; the dashboard on it."""
    go = tmp_path / "go"
    wait = f'{sys.executable} -c "import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.05)"'
    plan({"1": [["shell", wait], ["set", "train.py", "X", "4"], ["print", "Hypothesis: four"]]})
    proc = overnight_process("run", task.path, "--tag", "live", "--agent-command", AGENT, "--max-experiments", "1")

    def finish() -> None:
        go.touch()
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err

    try:
        with running(task.path, "live") as server:
            deadline = time.monotonic() + 20
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


def test_a_run_in_progress_shows_as_running(task: Repo, plan, tmp_path: Path) -> None:
    with in_progress(task, plan, tmp_path) as (server, finish):
        run = get(server, "/api/run")
        assert run["running"] is True and run["counts"] == {"baseline": 1, "running": 1}
        assert get(server, "/api/experiments/1")["status"] == "running"
        finish()
        run = get(server, "/api/run")
        assert run["running"] is False and run["best"]["id"] == 1 and run["counts"]["keep"] == 1


# -- the page in a real browser ------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture
def browser_page() -> Iterator[Any]:
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


def test_the_page_in_a_browser(browser_page: Any, server: DashboardServer, tmp_path: Path) -> None:
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(server.url)

    # The chart: one point per measured experiment, keeps green, failures marked on the axis.
    keeps = [i for i, s in STATUSES.items() if s == "keep"]
    expect = pytest.importorskip("playwright.sync_api").expect  # waits without eval: the page forbids it (CSP)
    expect(page.locator("#chart svg circle.keep")).to_have_count(len(keeps))
    assert page.locator("#chart svg circle.discard").count() == 3
    assert page.locator("#chart svg circle.baseline").count() == 1
    assert page.locator("#chart svg path.fail").count() == 4
    assert page.locator("#chart svg path.best").count() == 1
    fill = page.eval_on_selector("#chart svg circle.keep", "c => getComputedStyle(c).fill")
    assert fill == "rgb(31, 157, 85)"  # green
    labels = page.locator("#chart svg text.keep-label")  # on up to two lines, cut with … where they must be
    assert labels.count() == 1 + len(keeps)
    assert labels.nth(1).locator("title").text_content() == "raise the learning rate from 1e-3 to 3e-3"
    assert labels.nth(1).locator("tspan").first.text_content().startswith("raise the")
    assert page.inner_text("#chart-title") == "12 experiments, 5 kept improvements"
    assert page.inner_text("#run-tag") == "lm" and page.inner_text("#run-state") == "not running"
    assert page.inner_text("#best-value") == f"{views.load_view(server.directory, 'lm').get(12).metric:.6g}"

    # The table: a row per experiment, newest first; filter by status; sort by a column.
    rows = page.locator("#experiments tbody tr")
    assert rows.count() == 13
    assert rows.first.get_attribute("data-id") == "12"
    page.click("#filters button[data-status='keep']")
    assert page.locator("#experiments tbody tr").count() == len(keeps)
    page.click("#filters button[data-status='all']")

    def order() -> list[str | None]:
        return [r.get_attribute("data-id") for r in page.locator("#experiments tbody tr").all()[:3]]

    page.click("#experiments th[data-key='metric']")  # ascending: the best first
    assert order() == ["12", "9", "11"]
    page.click("#experiments th[data-key='id']")  # back to newest first
    assert order() == ["12", "11", "10"]

    # A click shows the experiment: hypothesis, diff coloured, log tail.
    page.click("#experiments tbody tr[data-id='1']")
    expect(page.locator("#detail-id")).to_have_text("#1")
    assert page.inner_text("#detail-hypothesis") == "raise the learning rate from 1e-3 to 3e-3"
    assert page.locator("#detail-diff span.add").all_inner_texts() == ["+LR = 0.003"]
    assert page.locator("#detail-diff span.del").all_inner_texts() == ["-LR = 0.001"]
    assert "val_bpb:" in page.inner_text("#detail-log")
    page.click("#detail .tab[data-log='agent']")
    assert "Hypothesis: raise the learning rate" in page.inner_text("#detail-log")
    page.click("#chart svg path.fail.rejected")  # the chart's marks select too
    expect(page.locator("#detail-id")).to_have_text("#7")
    assert page.locator("#detail-diff span.add").all_inner_texts() == ["+CACHE = True"]

    # The screenshot the README shows: OVERNIGHT_DASHBOARD_SCREENSHOT=docs/dashboard.png to refresh it.
    page.click("#experiments tbody tr[data-id='9']")
    page.click("#detail .tab[data-log='experiment']")
    expect(page.locator("#detail-id")).to_have_text("#9")
    target = Path(os.environ.get("OVERNIGHT_DASHBOARD_SCREENSHOT") or tmp_path / "dashboard.png")
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000
    assert errors == []


def test_the_page_shows_stale_experiments_and_retries_a_failed_detail(
    browser_page: Any, server: DashboardServer
) -> None:
    expect = pytest.importorskip("playwright.sync_api").expect
    page = browser_page
    asked: list[str] = []
    page.on("request", lambda req: asked.append(req.url.split("/api/", 1)[-1]) if "/api/" in req.url else None)

    def stale_two(route: Any) -> None:  # experiment 2 as a change that could not be rebased
        response = route.fetch()
        state = response.json()
        state["experiments"][2]["status"] = "stale"
        state["run"]["counts"] = {**state["run"]["counts"], "discard": 2, "stale": 1}
        route.fulfill(response=response, json=state)

    failed: list[int] = []

    def fail_once(route: Any) -> None:
        if failed:
            route.continue_()
        else:
            failed.append(1)
            route.fulfill(status=500, json={"error": "the ledger is busy"})

    page.route("**/api/state", stale_two)
    page.route("**/api/experiments/3", fail_once)
    page.goto(server.url + "#3")
    expect(page.locator("#chart svg circle.stale")).to_have_count(1)
    expect(page.locator("#legend .key.stale")).to_have_text("stale (better, not rebased)")
    expect(page.locator("#experiments-sub")).to_have_text("5 kept · 2 discarded · 4 failed · 1 stale")
    expect(page.locator("#detail-id")).to_have_text("#3")  # the next poll asked again, after the 500
    assert failed == [1] and "run" not in asked and "experiments" not in asked and "state" in asked


def test_tail_reads_the_end_of_a_long_log(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    log.write_text("".join(f"line {i} " + "x" * 200 + "\n" for i in range(20_000)))  # 4 MB
    end = tail(log)
    assert end["exists"] and end["truncated"] and end["lines"] == 200 and end["size"] == log.stat().st_size
    assert end["text"].splitlines()[0].startswith("line 19800 ") and end["text"].endswith("x")
    short = tmp_path / "short.log"
    short.write_bytes(b"one\r\ntwo \xff\n")
    assert tail(short)["text"] == "one\ntwo \ufffd" and not tail(short)["truncated"]
    none = tail(tmp_path / "none.log")
    assert not none["exists"] and none["text"] == ""


def test_serve_checks_its_arguments(tmp_path: Path, task: Repo) -> None:
    with pytest.raises(ConfigError, match="no such folder"):
        serve(tmp_path / "nowhere", None, port=0)
    outside = tmp_path / "outside"
    outside.mkdir()
    with pytest.raises(GitError, match="not inside a git repository"):
        serve(outside, None, port=0)
    with pytest.raises(RunStateError, match="invalid tag"):
        serve(task.path, "../x", port=0)


def test_the_page_follows_a_run_in_a_browser(browser_page: Any, task: Repo, plan, tmp_path: Path) -> None:
    expect = pytest.importorskip("playwright.sync_api").expect
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    with in_progress(task, plan, tmp_path) as (server, finish):
        page.goto(server.url + "#1")  # experiment 1 selected
        expect(page.locator("#run-state")).to_have_text("running")
        expect(page.locator("#chart svg circle.running")).to_have_count(1)
        expect(page.locator("#experiments tbody tr")).to_have_count(2)
        expect(page.locator("#detail-status")).to_have_text("running")
        finish()
        # No reload: the next polls bring the end of the run, and the selected experiment's change.
        expect(page.locator("#run-state")).to_have_text("not running")
        expect(page.locator("#experiments tbody tr[data-id='1'] .status")).to_have_text("keep")
        expect(page.locator("#chart svg circle.keep")).to_have_count(1)
        expect(page.locator("#chart svg circle.running")).to_have_count(0)
        expect(page.locator("#detail-status")).to_have_text("keep")
        expect(page.locator("#detail-diff span.add")).to_have_text(["+X = 4"])
    assert errors == []
