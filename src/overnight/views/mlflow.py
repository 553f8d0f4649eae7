"""Export a run to MLflow: one MLflow run per experiment, in one MLflow experiment per overnight run.

An optional extra (``pip install 'overnight[mlflow]'``); MLflow is imported only when exporting.
Only the client API is used (``MlflowClient``), never MLflow's global "active run" state.

What each MLflow run holds:

* tags ``overnight.*``: status, hypothesis (shortened; the whole of it is the run's description),
  agent, experiment id, commit, parent, reason, worker, exit code, host; ``overnight.key`` is
  ``<overnight run id>/<experiment id>``, which makes exporting again idempotent;
* params: ``files_changed``, ``insertions``, ``deletions``; ``agent.*`` (the model, and the
  ``[agent]`` settings the experiment was proposed with, command-line overrides included, when its
  agent is of their kind; runs from before those were recorded have only overnight.toml's);
  ``tune.<NAME>`` for the values the tune agent chose;
* metrics: the run's metric and every secondary metric under their own names, and overnight's
  bookkeeping under ``overnight/``: runs, duration_s, peak_memory_mb, tokens_in, tokens_out,
  cost_usd, improvement, ci_low, ci_high, holdout;
* artifacts: ``diff.patch`` (the change against its parent, or the rejected change), ``run.log``
  and ``agent.log``.

Exporting again skips the experiments whose ledger row is unchanged (a digest of it is kept in the
tag ``overnight.row``) and updates the others in place, e.g. one that was running and has finished.
MLflow params cannot change once logged, so an update adds only params that are new.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from overnight import git
from overnight.errors import ConfigError, OvernightError
from overnight.records import Experiment, Status
from overnight.views import RunView, experiment_diff
from overnight.views import mlflow_fields as fields

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

INSTALL_HINT = "pip install 'overnight[mlflow]'"
DB_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
FORMAT = 1  # bump when what an experiment exports to changes, so the next export updates every run

# An MLflow run ends FINISHED, FAILED or KILLED; RUNNING while the experiment is.
_MLFLOW_STATUS = {
    Status.RUNNING: "RUNNING",
    Status.CRASH: "FAILED",
    Status.TIMEOUT: "FAILED",
    Status.NO_METRIC: "FAILED",
    Status.GATE_FAILED: "FAILED",
    Status.REJECTED: "FAILED",
    Status.INTERRUPTED: "KILLED",
}


@dataclass(frozen=True)
class ExportResult:
    """What one export did."""

    created: int
    updated: int
    unchanged: int
    tracking_uri: str
    experiment_name: str
    experiment_id: str
    artifact_location: str

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged

    def summary(self) -> str:
        lines = [
            f"exported {self.total} experiments to MLflow experiment {self.experiment_name!r} "
            f"(id {self.experiment_id}): {self.created} new, {self.updated} updated, {self.unchanged} unchanged",
            f"tracking URI: {self.tracking_uri}",
            f"artifacts:    {self.artifact_location}",
        ]
        if self.tracking_uri.startswith("sqlite:"):
            lines.append(f"view:         mlflow ui --backend-store-uri {self.tracking_uri}  (needs the full mlflow)")
        return "\n".join(lines)


def default_tracking_uri(view: RunView) -> str:
    """A SQLite store in the run's folder: ``sqlite:///<repo>/.overnight/<tag>/mlflow.db``."""
    return f"sqlite:///{(view.paths.dir / DB_FILE).as_posix()}"


def default_experiment_name(view: RunView) -> str:
    """``overnight/<repo folder>[/<task folder>]/<tag>``."""
    task = view.meta.get("task", "")
    label = view.root.name if task in ("", ".") else f"{view.root.name}/{task}"
    return f"overnight/{label}/{view.tag}"


def export(view: RunView, tracking_uri: str | None = None, experiment_name: str | None = None) -> ExportResult:
    """Export every experiment of ``view`` to MLflow; see the module's docstring for what goes where."""
    uri = tracking_uri or default_tracking_uri(view)
    try:
        with _quiet_mlflow_logs():
            return _Exporter(view, _connect(uri), uri).run(experiment_name)
    except ImportError as exc:  # what the SQL store needs besides mlflow itself (sqlalchemy, alembic)
        raise ConfigError(f"exporting to MLflow needs {exc.name or 'a package'}: {INSTALL_HINT}") from None
    except OvernightError:
        raise
    except Exception as exc:
        from mlflow.exceptions import MlflowException

        if isinstance(exc, MlflowException):
            raise OvernightError(f"MLflow at {uri}: {exc.message}") from None
        raise


def _connect(uri: str) -> MlflowClient:
    try:
        import mlflow  # noqa: F401  (first: a package that is gone must not hide behind a cached submodule)
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ConfigError(f"exporting to MLflow needs the mlflow package: {INSTALL_HINT}") from None
    return MlflowClient(tracking_uri=uri)


@contextlib.contextmanager
def _quiet_mlflow_logs() -> Iterator[None]:
    """MLflow announces every migration of a new SQLite store at INFO; keep only its warnings."""
    loggers = [logging.getLogger(name) for name in ("mlflow.store.db.utils", "alembic.runtime.migration")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


class _Exporter:
    def __init__(self, view: RunView, client: MlflowClient, uri: str) -> None:
        self.view = view
        self.client = client
        self.uri = uri
        self.config: dict[str, Any] = json.loads(view.meta.get("config") or "{}")
        created_at = view.meta.get("created_at", "")
        self.run_id = view.meta.get("run_id") or hashlib.sha256(f"{view.tag}@{created_at}".encode()).hexdigest()[:12]

    def run(self, experiment_name: str | None) -> ExportResult:
        experiment_id, name, location = self._experiment(experiment_name)
        existing = self._existing(experiment_id)
        created = updated = unchanged = 0
        for exp in self.view.experiments:
            found = existing.get(str(exp.id))
            digest = self._digest(exp)
            if found is None:
                self._create(experiment_id, exp, digest)
                created += 1
            elif found.data.tags.get(fields.ROW_TAG) != digest:
                self._update(found, exp, digest)
                updated += 1
            else:
                unchanged += 1
        return ExportResult(created, updated, unchanged, self.uri, name, experiment_id, location)

    # --- the MLflow experiment -----------------------------------------------------------------

    def _experiment(self, requested: str | None) -> tuple[str, str, str]:
        """(id, name, artifact location) of the MLflow experiment, created when missing.

        Without a name asked for, a same-named experiment that holds another overnight run
        (a tag used again after its folder was removed) is left alone: this run gets
        ``<name> [<run id>]`` instead.
        """
        name = requested or default_experiment_name(self.view)
        found = self.client.get_experiment_by_name(name)
        if found is not None and not requested and found.tags.get(fields.RUN_ID_TAG, self.run_id) != self.run_id:
            name = f"{name} [{self.run_id}]"
            found = self.client.get_experiment_by_name(name)
        if found is None:
            location = self._artifact_location()
            experiment_id = self.client.create_experiment(
                name, artifact_location=location, tags=self._experiment_tags()
            )
            found = self.client.get_experiment(experiment_id)
        elif found.lifecycle_stage == "deleted":  # MLflow adds no runs to a deleted experiment
            self.client.restore_experiment(found.experiment_id)
        return str(found.experiment_id), name, str(found.artifact_location)

    def _artifact_location(self) -> str | None:
        """Artifacts of a SQLite store go beside its database file (not into ./mlruns); a server decides its own."""
        if not self.uri.startswith("sqlite:///"):
            return None
        database = self.uri.removeprefix("sqlite:///").split("?", 1)[0]
        if database in ("", ":memory:"):
            return None
        return str(Path(database).resolve().parent / ARTIFACTS_DIR)

    def _experiment_tags(self) -> dict[str, str]:
        meta, view = self.view.meta, self.view
        description = (
            f"overnight run `{view.tag}` of the task `{meta.get('task') or '.'}` in {view.root}: "
            f"{view.metric} ({view.goal.value}), started {meta.get('created_at', '')} "
            f"from commit {meta.get('start_commit', '')[:10]} on the branch {git.BRANCH_PREFIX}{view.tag}."
        )
        return {
            fields.RUN_ID_TAG: self.run_id,
            "overnight.tag": view.tag,
            "overnight.task": meta.get("task", ""),
            "overnight.repo": str(view.root),
            "overnight.metric": view.metric,
            "overnight.goal": view.goal.value,
            "overnight.start_commit": meta.get("start_commit", ""),
            "overnight.created_at": meta.get("created_at", ""),
            "mlflow.note.content": description,
        }

    def _existing(self, experiment_id: str) -> dict[str, Run]:
        """This overnight run's MLflow runs, by experiment id (deleted MLflow runs are exported anew)."""
        found: dict[str, Run] = {}
        token: str | None = None
        while True:
            page = self.client.search_runs(
                [experiment_id], filter_string=f"tags.`{fields.RUN_ID_TAG}` = '{self.run_id}'", max_results=1000,
                page_token=token,
            )  # fmt: skip
            for run in page:
                key = run.data.tags.get(fields.KEY_TAG, "")
                prefix, _, exp_id = key.rpartition("/")
                if prefix == self.run_id:
                    found.setdefault(exp_id, run)
            token = page.token
            if not token:
                return found

    # --- one experiment ------------------------------------------------------------------------

    def _create(self, experiment_id: str, exp: Experiment, digest: str) -> None:
        run = self.client.create_run(
            experiment_id, start_time=fields.millis(exp.started_at), tags={fields.KEY_TAG: f"{self.run_id}/{exp.id}"},
            run_name=fields.run_name(exp),
        )  # fmt: skip
        run_id = run.info.run_id
        self._log(
            run_id,
            exp,
            params=fields.params(exp, self._agent(exp)),
            metrics=fields.metrics(exp, self.view.metric),
            tags=fields.tags(exp, self.run_id, self.view.tag),
        )
        self._artifacts(run_id, exp)
        self._finish(run_id, exp)
        self.client.set_tag(run_id, fields.ROW_TAG, digest)  # last: a run cut short is updated by the next export

    def _update(self, run: Run, exp: Experiment, digest: str) -> None:
        run_id = run.info.run_id
        old_metrics = run.data.metrics
        metrics = {k: v for k, v in fields.metrics(exp, self.view.metric).items() if old_metrics.get(k) != v}
        params = {k: v for k, v in fields.params(exp, self._agent(exp)).items() if k not in run.data.params}
        tags = fields.tags(exp, self.run_id, self.view.tag)
        for key in run.data.tags:
            if key.startswith("overnight.") and key not in tags and key not in (fields.KEY_TAG, fields.ROW_TAG):
                self.client.delete_tag(run_id, key)
        self._log(run_id, exp, params=params, metrics=metrics, tags=tags)
        if run.info.run_name != fields.run_name(exp):
            self.client.update_run(run_id, name=fields.run_name(exp))
        self._artifacts(run_id, exp)
        self._finish(run_id, exp)
        self.client.set_tag(run_id, fields.ROW_TAG, digest)

    def _finish(self, run_id: str, exp: Experiment) -> None:
        status = _MLFLOW_STATUS.get(exp.status, "FINISHED")
        if status != "RUNNING":  # a new MLflow run is RUNNING until it is terminated
            self.client.set_terminated(run_id, status=status, end_time=fields.millis(exp.ended_at))

    def _agent(self, exp: Experiment) -> Any:
        """The [agent] settings ``exp`` was proposed with; overnight.toml's for a run that did not record them."""
        return self.view.agent_settings(exp.id) or self.config.get("agent")

    def _digest(self, exp: Experiment) -> str:
        """What the export of ``exp`` depends on, hashed: its row, the metric's name and its [agent] settings."""
        data = {"format": FORMAT, "row": exp.to_json(), "metric": self.view.metric, "agent": self._agent(exp)}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def _log(
        self, run_id: str, exp: Experiment, *, params: dict[str, str], metrics: dict[str, float], tags: dict[str, str]
    ) -> None:
        from mlflow.entities import Metric, Param, RunTag

        stamp = fields.millis(exp.ended_at or exp.started_at) or fields.now_millis()  # when the metrics were taken
        metric_list = [Metric(k, v, stamp, 0) for k, v in metrics.items()]
        param_list = [Param(k, v) for k, v in params.items()]
        tag_list = [RunTag(k, v) for k, v in tags.items()]
        # One call takes at most 1000 metrics, 100 params, 100 tags, and 1000 of them all together.
        while metric_list or param_list or tag_list:
            self.client.log_batch(run_id, metrics=metric_list[:800], params=param_list[:100], tags=tag_list[:100])
            metric_list, param_list, tag_list = metric_list[800:], param_list[100:], tag_list[100:]

    def _artifacts(self, run_id: str, exp: Experiment) -> None:
        with tempfile.TemporaryDirectory(prefix="overnight-mlflow-") as tmp:
            folder = Path(tmp)
            diff = experiment_diff(self.view, exp).text
            if diff:
                (folder / "diff.patch").write_text(diff, encoding="utf-8")
            for kind, name in (("", "run.log"), ("agent", "agent.log")):
                source = self.view.paths.log(exp.id, kind)
                if source.is_file():
                    shutil.copyfile(source, folder / name)
            if any(folder.iterdir()):
                self.client.log_artifacts(run_id, str(folder))
