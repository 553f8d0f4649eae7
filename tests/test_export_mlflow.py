"""`overnight export mlflow`: one MLflow run per experiment, idempotent, in a SQLite store in the run folder."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import AGENT, Repo
from overnight import git, views
from overnight.errors import ConfigError
from overnight.records import Status
from overnight.run.ledger import Ledger
from overnight.views.mlflow import export

needs_mlflow = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow is not installed")

# SQLAlchemy 2.1 deprecates a loader option that MLflow's SQL store still uses; it is MLflow's to fix.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings(
        "ignore:The ``noload`` loader strategy is deprecated:sqlalchemy.exc.SADeprecationWarning"
    ),
]


@pytest.fixture
def finished(task: Repo, plan, cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    monkeypatch.chdir(tmp_path)  # nothing may land in the current directory (no ./mlruns)
    plan(
        {
            "1": [["set", "train.py", "X", "5"], ["print", "Hypothesis: closer to three"]],
            "2": [["set", "train.py", "X", "9"], ["print", "Hypothesis: too far\tout"]],
            "3": [["write", "helper.py", "VALUE = 9\n"], ["print", "Hypothesis: cheat"]],
            "4": [["set", "train.py", "X", "3"], ["print", "Hypothesis: exactly three"]],
        }
    )
    assert cli("run", task.path, "--tag", "v", "--agent-command", AGENT, "--max-experiments", "3").code == 0
    return task


def forget_agents(repo: Repo) -> None:
    """Make the run one from before the effective [agent] settings were recorded (meta key "agents")."""
    with Ledger(views.load_view(repo.path, "v").paths.ledger) as ledger, ledger.transaction() as db:
        db.execute("DELETE FROM meta WHERE key = 'agents'")


def client_for(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def runs_by_id(uri: str, experiment_id: str) -> dict[int, Any]:
    runs = client_for(uri).search_runs([experiment_id], max_results=1000)
    by_id = {int(r.data.tags["overnight.experiment_id"]): r for r in runs}
    assert len(by_id) == len(runs)
    return by_id


def artifact_text(uri: str, run_id: str, name: str) -> str:
    from mlflow.artifacts import download_artifacts

    return Path(download_artifacts(run_id=run_id, artifact_path=name, tracking_uri=uri)).read_text()


@needs_mlflow
def test_export(finished: Repo, cli, tmp_path: Path) -> None:
    forget_agents(finished)
    view = views.load_view(finished.path, "v")
    result = export(view)
    state = finished.path / ".overnight" / "v"
    assert result.tracking_uri == f"sqlite:///{state / 'mlflow.db'}"
    assert result.experiment_name == "overnight/repo/v"
    assert (result.created, result.updated, result.unchanged, result.total) == (4, 0, 0, 4)
    assert "exported 4 experiments" in result.summary()

    client = client_for(result.tracking_uri)
    experiment = client.get_experiment_by_name("overnight/repo/v")
    assert experiment.experiment_id == result.experiment_id
    assert experiment.tags["overnight.run_id"] == view.meta["run_id"]
    assert Path(experiment.artifact_location) == state / "mlartifacts"
    runs = runs_by_id(result.tracking_uri, result.experiment_id)
    assert sorted(runs) == [e.id for e in view.experiments] == [0, 1, 2, 3]

    keep = runs[1]
    exp = view.get(1)
    tags, params, metrics = keep.data.tags, keep.data.params, keep.data.metrics
    assert tags["overnight.key"] == f"{view.meta['run_id']}/1"
    assert tags["overnight.status"] == "keep"
    assert tags["overnight.hypothesis"] == "closer to three"
    assert tags["overnight.agent"] == "command"
    assert tags["overnight.commit"] == finished.git("rev-parse", "overnight/v").strip() == exp.commit
    assert tags["overnight.parent"] == exp.parent == view.get(0).commit
    assert tags["overnight.worker"] == str(exp.worker)
    assert tags["overnight.reason"] == exp.reason and "better than the best" in exp.reason
    assert tags["mlflow.note.content"] == f"closer to three\n\nkeep: {exp.reason}"  # the run's description
    assert keep.info.run_name == "1: closer to three"
    assert keep.info.status == "FINISHED"
    assert keep.info.start_time == int(_seconds(exp.started_at) * 1000)
    assert keep.info.end_time == int(_seconds(exp.ended_at) * 1000)
    assert params["files_changed"] == "1" and params["insertions"] == "1" and params["deletions"] == "1"
    # All this older run stored is overnight.toml's [agent], tune's: it says nothing of a command agent.
    assert not any(k.startswith("agent.") for k in params)
    assert metrics["score"] == 5.0 == exp.metric
    assert metrics["budget"] == 5.0 and "seed" in metrics  # the secondary metrics
    assert metrics["overnight/runs"] == exp.runs == 2
    assert metrics["overnight/duration_s"] == pytest.approx(exp.duration_s)
    assert metrics["overnight/peak_memory_mb"] == pytest.approx(exp.peak_memory_mb)
    assert "overnight/tokens_in" not in metrics and "overnight/cost_usd" not in metrics  # a command tells neither
    assert "overnight/holdout" not in metrics

    uri, run_id = result.tracking_uri, keep.info.run_id
    assert artifact_text(uri, run_id, "diff.patch") == git.diff_text(finished.path, exp.parent, exp.commit)
    assert "-X = 10\n+X = 5" in artifact_text(uri, run_id, "diff.patch")
    assert artifact_text(uri, run_id, "run.log") == view.paths.log(1).read_text()
    assert "score: 5" in artifact_text(uri, run_id, "run.log")
    assert artifact_text(uri, run_id, "agent.log") == view.paths.log(1, "agent").read_text()
    assert keep.info.artifact_uri.startswith(str(state / "mlartifacts"))
    assert not (tmp_path / "mlruns").exists() and not (finished.path / "mlruns").exists()

    assert runs[0].data.tags["overnight.status"] == "baseline" and runs[0].data.metrics["score"] == 50.0
    assert runs[2].data.tags["overnight.status"] == "discard" and runs[2].data.metrics["score"] == 37.0
    assert runs[2].data.tags["overnight.hypothesis"] == "too far out"
    rejected = runs[3]
    assert rejected.data.tags["overnight.status"] == "rejected" and rejected.info.status == "FAILED"
    assert "changed files that are not editable: helper.py" in rejected.data.tags["overnight.reason"]
    assert "score" not in rejected.data.metrics
    assert "+VALUE = 9" in artifact_text(uri, rejected.info.run_id, "diff.patch")  # the kept diff of a rejected change

    # Again: nothing new, the same MLflow runs.
    again = export(views.load_view(finished.path, "v"))
    assert (again.created, again.updated, again.unchanged, again.total) == (0, 0, 4, 4)
    assert again.experiment_id == result.experiment_id
    ids = {k: r.info.run_id for k, r in runs_by_id(uri, result.experiment_id).items()}
    assert ids == {k: r.info.run_id for k, r in runs.items()}

    # The run goes on: the next export adds the new experiment alone.
    assert cli("run", finished.path, "--tag", "v", "--agent-command", AGENT, "--max-experiments", "1").code == 0
    later = export(views.load_view(finished.path, "v"))
    assert (later.created, later.updated, later.unchanged, later.total) == (1, 0, 4, 5)
    after = runs_by_id(uri, result.experiment_id)
    assert sorted(after) == [0, 1, 2, 3, 4]
    assert {k: after[k].info.run_id for k in ids} == ids
    assert after[4].data.tags["overnight.hypothesis"] == "exactly three" and after[4].data.metrics["score"] == 1.0

    # Another overnight run that reuses the tag (its folder removed) does not mix into this MLflow experiment.
    other = dataclasses.replace(views.load_view(finished.path, "v"), meta={**view.meta, "run_id": "0123456789ab"})
    apart = export(other)
    assert apart.experiment_name == "overnight/repo/v [0123456789ab]" and apart.created == 5
    assert len(runs_by_id(uri, result.experiment_id)) == 5


@needs_mlflow
def test_a_running_experiment_is_updated_once_it_ends(finished: Repo, tmp_path: Path) -> None:
    view = views.load_view(finished.path, "v")
    final = view.get(2)
    running = dataclasses.replace(final, status=Status.RUNNING, metric=None, metrics={}, ended_at="", runs=0)
    with Ledger(view.paths.ledger) as ledger:
        ledger.record(running)
    uri = f"sqlite:///{tmp_path / 'elsewhere' / 'store.db'}"
    (tmp_path / "elsewhere").mkdir()
    first = export(views.load_view(finished.path, "v"), tracking_uri=uri, experiment_name="mine")
    assert (first.tracking_uri, first.experiment_name, first.created) == (uri, "mine", 4)
    assert Path(first.artifact_location) == tmp_path / "elsewhere" / "mlartifacts"  # beside the database
    before = runs_by_id(uri, first.experiment_id)[2]
    assert before.info.status == "RUNNING" and before.data.tags["overnight.status"] == "running"
    assert "score" not in before.data.metrics

    # It ends, with what an LLM or tune agent would have recorded.
    final = dataclasses.replace(
        final,
        tokens_in=1200,
        tokens_out=300,
        cost_usd=0.0125,
        holdout=36.5,
        info={"model": "m-1", "params": {"X": 9}},
        metrics={**final.metrics, "loss$ (val)": 0.5, "../up": 2.0, **{f"layer/{i}": float(i) for i in range(900)}},
    )
    with Ledger(view.paths.ledger) as ledger:
        ledger.record(final)
    second = export(views.load_view(finished.path, "v"), tracking_uri=uri, experiment_name="mine")
    assert (second.created, second.updated, second.unchanged) == (0, 1, 3)
    after = runs_by_id(uri, first.experiment_id)[2]
    assert after.info.run_id == before.info.run_id
    assert after.info.status == "FINISHED" and after.data.tags["overnight.status"] == "discard"
    assert after.data.metrics["score"] == 37.0
    assert after.data.metrics["overnight/tokens_in"] == 1200 and after.data.metrics["overnight/tokens_out"] == 300
    assert after.data.metrics["overnight/cost_usd"] == 0.0125 and after.data.metrics["overnight/holdout"] == 36.5
    assert after.data.params["agent.model"] == "m-1" and after.data.params["tune.X"] == "9"
    assert after.data.params["files_changed"] == "1"
    assert after.data.metrics["loss_ _val_"] == 0.5 and after.data.metrics["up"] == 2.0  # made valid MLflow keys
    assert sum(k.startswith("layer/") for k in after.data.metrics) == 900  # more than one batch
    assert after.info.end_time == int(_seconds(final.ended_at) * 1000)
    assert not (views.load_view(finished.path, "v").paths.dir / "mlflow.db").exists()  # only the store asked for


@needs_mlflow
def test_the_agent_settings_are_those_each_experiment_ran_with(finished: Repo, tmp_path: Path) -> None:
    first = {"kind": "command", "command": "./propose.sh", "timeout_s": 60.0, "model": "", "tune": {}}
    second = {**first, "command": "./propose.sh --bolder", "timeout_s": 90.0}
    with Ledger(views.load_view(finished.path, "v").paths.ledger) as ledger:
        ledger.set_meta(agents=json.dumps([{"from": 0, "settings": first}, {"from": 2, "settings": second}]))
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    result = export(views.load_view(finished.path, "v"), tracking_uri=uri)
    params = {i: r.data.params for i, r in runs_by_id(uri, result.experiment_id).items()}
    assert params[1]["agent.command"] == "./propose.sh" and params[1]["agent.timeout_s"] == "60.0"
    assert params[2]["agent.command"] == params[3]["agent.command"] == "./propose.sh --bolder"
    assert params[3]["agent.timeout_s"] == "90.0" and "agent.model" not in params[3]
    assert not any(k.startswith("agent.") for k in params[0])  # the baseline had no agent


def test_without_mlflow(finished: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ConfigError, match=r"pip install 'overnight\[mlflow\]'"):
        export(views.load_view(finished.path, "v"))


def _seconds(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()
