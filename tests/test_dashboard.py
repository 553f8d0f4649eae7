"""`overnight dashboard`: the read-only web page of a run and its JSON API (the page in a browser: test_dashboard_browser.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import AGENT, Repo
from dashboard_support import STATUSES, build_lm_run, finite, get, in_progress, request, running
from overnight import git, views
from overnight.errors import ConfigError, GitError
from overnight.run.paths import RunPaths
from overnight.views import tail
from overnight.views.dashboard import DashboardServer, serve
from overnight.views.dashboard.server import experiment_detail, run_summary


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    return build_lm_run(tmp_path_factory.mktemp("dashboard"))


@pytest.fixture(scope="module")
def server(lm_run: Repo) -> Iterator[DashboardServer]:
    with running(lm_run.path, None) as server:
        yield server


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
    monkeypatch.setattr(git, "repo_root", no_git)
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
        # The page's run picker: the task's runs, and any of them by ?tag=, whichever the server follows.
        runs = get(server, "/api/runs")
        assert [(r["tag"], r["experiments"], r["kept"]) for r in runs["runs"]] == [("a", 2, 2), ("b", 1, 0)]
        assert runs["followed"] == "b" and runs["pinned"] is False
        picked = get(server, "/api/state?tag=a")
        assert picked["run"]["tag"] == "a" and [r["id"] for r in picked["experiments"]] == [0, 1, 2]
        assert (picked["run"]["after_baseline"], picked["run"]["kept"], picked["run"]["state"]) == (2, 2, "finished")
        assert get(server, "/api/experiments/2?tag=a")["status"] == "keep"
        status, _, body = request(server, "/api/run?tag=nope")
        assert status == 404 and "no run with tag 'nope'" in body["error"]
        assert request(server, "/api/run?tag=../x")[0] == 404  # not a tag: refused, never a path
    with running(task.path, "a") as pinned:
        assert get(pinned, "/api/run")["tag"] == "a"
        assert get(pinned, "/api/runs")["followed"] == "a" and get(pinned, "/api/run?tag=b")["tag"] == "b"


def test_a_run_in_progress_shows_as_running(task: Repo, plan, tmp_path: Path) -> None:
    with in_progress(task, plan, tmp_path) as (server, finish):
        run = get(server, "/api/run")
        assert run["running"] is True and run["counts"] == {"baseline": 1, "running": 1}
        assert get(server, "/api/experiments/1")["status"] == "running"
        finish()
        run = get(server, "/api/run")
        assert run["running"] is False and run["best"]["id"] == 1 and run["counts"]["keep"] == 1


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
    with pytest.raises(ConfigError, match="invalid tag"):
        serve(task.path, "../x", port=0)
