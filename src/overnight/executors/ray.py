"""The Ray executor: each measurement is a Ray task on a cluster node.

The experiment's commit travels as a `git archive` (the task folder's repository
at that commit, as a tar in Ray's object store); the node unpacks it into a fresh
folder, runs setup → gate → run → metric there with the same runner as a local
measurement, and sends back the Measurement and the log. Resource requests come
from ``[task] num_cpus`` and ``num_gpus``; Ray sets ``CUDA_VISIBLE_DEVICES`` for GPU tasks.

A worker process or node that dies mid-measurement is retried (``RETRIES`` times,
noted in the log); a request no node of the cluster can ever satisfy is refused
before the run starts instead of waiting forever. Ray is an optional extra
(``pip install 'overnight[ray]'``), imported only when this executor is chosen.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tarfile
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from overnight import sandbox
from overnight.errors import ConfigError
from overnight.executors._base import Executor, Job, Measurement
from overnight.executors.perform import perform
from overnight.git import git_bytes
from overnight.records import Status
from overnight.task import Task

log = logging.getLogger(__name__)

RETRIES = 2  # resubmissions after the Ray worker or node died
_SYSTEM_FAILURES = ("WorkerCrashedError", "NodeDiedError", "OwnerDiedError", "ActorDiedError", "ObjectLostError")


def measure_remotely(archive: bytes, job: Job) -> tuple[Measurement, str]:
    """Run on a Ray worker: unpack the commit, measure it there, return the Measurement and the log."""
    folder = Path(tempfile.mkdtemp(prefix="overnight-ray-"))
    try:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(folder, filter="data")
        task_dir = folder / job.task_rel
        log_path = folder / "measurement.log"
        # The node's own environment: RayExecutor.measure sent none of the controller's.
        env = {**os.environ, "OVERNIGHT_RAY_WORKER_PID": str(os.getpid())}
        # The sandbox named the controller's worktree: here the unpacked commit is the one to open.
        box = sandbox.for_task(folder, folder, job.sandbox.network) if job.sandbox else None
        here = replace(job, task_dir=task_dir, log_path=log_path, env=env, setup=True, sandbox=box)
        measurement = perform(here)
        text = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
        return replace(measurement, setup_done=False), text
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, task: Task, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("the ray executor needs Ray: pip install 'overnight[ray]'") from None
        self._ray: Any = ray
        self._started = False
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:  # a Ray of its own, even when a cluster already runs on this machine ("local" never joins one)
                ray.init(address="local", num_cpus=os.cpu_count() or 1, log_to_driver=False, include_dashboard=False)
            self._started = True
        self.cpus = task.config.task.num_cpus
        self.gpus = task.config.task.num_gpus
        self._check_schedulable()
        self._task = ray.remote(measure_remotely).options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)
        self._archives: dict[str, Any] = {}  # commit → object ref of its archive
        self._lock = threading.Lock()

    def _check_schedulable(self) -> None:
        nodes = [n for n in self._ray.nodes() if n.get("Alive")]
        fits = [
            n for n in nodes if n["Resources"].get("CPU", 0) >= self.cpus and n["Resources"].get("GPU", 0) >= self.gpus
        ]
        if not fits:
            have = ", ".join(
                f"{n['Resources'].get('CPU', 0):g} CPU/{n['Resources'].get('GPU', 0):g} GPU" for n in nodes
            )
            self.close()
            raise ConfigError(
                f"no node of the Ray cluster can run an experiment: [task] asks for num_cpus = {self.cpus:g} and "
                f"num_gpus = {self.gpus:g}; the nodes have {have or 'nothing'}. Lower the request or add such a node"
            )

    def _archive(self, job: Job) -> Any:
        with self._lock:
            if job.commit not in self._archives:
                assert job.root is not None, "the worker gives the repository with the commit"
                data = git_bytes("archive", "--format=tar", job.commit, cwd=job.root)
                self._archives = {job.commit: self._ray.put(data)}  # keep only the latest commit's
            return self._archives[job.commit]

    def measure(self, job: Job, stop: threading.Event | None = None) -> Measurement:
        job = job.resolved()  # the commit travels as an archive: it must be written first
        if not job.commit:
            raise ConfigError("the ray executor needs the experiment's commit")
        archive = self._archive(job)
        # None of the controller's environment travels: the node has its own (and no business with secrets here);
        # overnight's own variables are made on the node from the job's fields.
        job = replace(job, env={})
        for attempt in range(RETRIES + 1):
            ref = self._task.remote(archive, job)
            while True:
                done, _ = self._ray.wait([ref], timeout=0.5)
                if done:
                    break
                if stop is not None and stop.is_set():
                    self._ray.cancel(ref, force=True)
                    return Measurement(Status.INTERRUPTED, "interrupted while running on the Ray cluster")
            try:
                measurement, text = self._ray.get(ref)
            except Exception as err:  # Ray wraps what went wrong on the node
                kind = type(err).__name__
                if kind in _SYSTEM_FAILURES and attempt < RETRIES:
                    note = f"### overnight: the Ray worker died ({kind}); retrying ({attempt + 1} of {RETRIES})\n"
                    _append(job.log_path, note)
                    log.warning("experiment %d: %s", job.experiment_id, note.strip())
                    continue
                return Measurement(Status.CRASH, f"the Ray task failed: {kind}: {str(err)[:300]}")
            _append(job.log_path, text)
            assert isinstance(measurement, Measurement)
            return measurement
        raise AssertionError("unreachable: the last attempt returns")

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
            self._started = False


def _append(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)
