"""The dashboard's page in a real browser (headless Chromium through Playwright): chart, table, details."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import AGENT, Repo, tune_task
from dashboard_support import STATUSES, build_lm_run, in_progress, open_page, running
from overnight import views
from overnight.views.dashboard import DashboardServer

pytestmark = pytest.mark.slow  # a heavy group: `pytest -m 'not slow'` leaves it out


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    return build_lm_run(tmp_path_factory.mktemp("dashboard"))


@pytest.fixture(scope="module")
def server(lm_run: Repo) -> Iterator[DashboardServer]:
    with running(lm_run.path, None) as server:
        yield server


@pytest.fixture
def browser_page() -> Iterator[Any]:
    with open_page() as page:
        yield page


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
    assert page.inner_text("#chart-title") == "12 experiments after the baseline, 5 kept"
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

    # The lab notebook: newest first; a note's experiment is a link.
    notes = page.locator("#notebook li")
    assert notes.count() == 2
    assert notes.first.inner_text() == "#5 (worker 0, command): 1e-2 overshoots; 3e-3 looks near the best learning rate"
    notes.nth(1).locator("a").click()
    expect(page.locator("#detail-id")).to_have_text("#2")
    assert page.locator("#detail-notes li").all_inner_texts() == [
        "a narrower model trains more steps but loses more per step"
    ]

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
        expect(page.locator("#chart-title")).to_have_text(
            "1 experiment after the baseline, 1 kept"
        )  # not "1 experiments"
    assert errors == []


# score = (X - 3)^2 + 1, plus a draw the seed decides: repeated runs differ, so estimates have intervals
SEEDED = """\
import os
X = 10.0
print("score:", (X - 3) ** 2 + 1 + 0.1 * (int(os.environ["OVERNIGHT_SEED"]) % 3))
"""


def test_the_chart_draws_each_estimates_interval_as_the_report_does(browser_page: Any, repo: Repo, cli) -> None:
    from overnight.views import report
    from overnight.views.dashboard.server import experiment_rows

    tune_task(repo, SEEDED)
    assert cli("run", repo.path, "--tag", "t", "--max-experiments", "3").code == 0
    view = views.load_view(repo.path, "t")
    rows = experiment_rows(view)
    with_interval = [r for r in rows if r["interval"] is not None]
    assert with_interval and all(r["interval"] == report.interval(view, view.get(r["id"])) for r in with_interval)
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    with running(repo.path, None) as server:
        page.goto(server.url)
        expect = pytest.importorskip("playwright.sync_api").expect
        expect(page.locator("#chart svg path.interval")).to_have_count(len(with_interval))
        assert "95% interval of the mean" in page.inner_text("#legend")
    assert errors == []


def test_the_table_marks_a_discard_within_the_noise_and_says_what_its_delta_is_against(
    browser_page: Any, task: Repo, plan, cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from overnight.views.dashboard.server import experiment_rows
    from test_noise_judge import NOISY

    monkeypatch.setenv("NOISE_DIR", str(tmp_path))
    monkeypatch.setenv("NOISE", json.dumps([1.0, -1.0, 1.0, -1.0, 0.0]))  # the baseline 51, 49, 51, 49; then 48.61
    task.write("train.py", NOISY)
    task.write("overnight.toml", (task.path / "overnight.toml").read_text().replace("exact = true", "exact = false"))
    task.commit("noisy")
    assert cli("noise", task.path, "--tag", "b", "--runs", "4").code == 0
    plan({"1": [["set", "train.py", "X", "9.9"]]})  # better than the baseline's 50 by 1.39: inside its noise
    assert cli("run", task.path, "--tag", "b", "--agent-command", AGENT, "--max-experiments", "1").code == 0
    judged = {r["id"]: r["judged"] for r in experiment_rows(views.load_view(task.path, "b"))}
    assert judged[1] == "within noise"
    assert "within noise" in cli("log", task.path, "--tag", "b").out  # the same word as log's
    page = browser_page
    with running(task.path, None) as server:
        page.goto(server.url)
        expect = pytest.importorskip("playwright.sync_api").expect
        expect(page.locator("#experiments tbody tr[data-id='1'] .judged")).to_have_text("within noise")
        assert page.locator("#experiments tbody tr[data-id='0'] .judged").count() == 0
        assert "judged against" in (page.get_attribute("#experiments th[data-key='delta']", "title") or "")
