"""The Ray executor: each measurement is a Ray task on a cluster node.

The experiment's commit travels as git packs through Ray's object store: the run's first
commit with its history once per node, then per commit only its new objects; each node
keeps a checkout per worktree of the controller, so ``[task] setup`` runs once per
checkout on a node (see overnight.executors.node). The node runs setup → gate → run →
metric there with the same runner as a local measurement, under the same guarantees:
credentials are removed from the commands' environment, a slot's GPU (``--gpus``) travels
with the measurement, and a watchdog kills the commands if the Ray worker running them
dies. Resource requests come from ``[task] num_cpus`` and ``num_gpus``; Ray sets
``CUDA_VISIBLE_DEVICES`` for GPU tasks (one GPU per experiment with ``num_gpus = 1``).

A worker process or node that dies mid-measurement is retried (``RETRIES`` times, noted
in the log); a request no node of the cluster can ever satisfy is refused before the run
starts instead of waiting forever, and a measurement that waits while no live node could
run it (its node died) gives up after ``OVERNIGHT_RAY_NODE_WAIT_S`` seconds (default
``NODE_WAIT_S``), which stops the run with a message saying so, or at ``--max-time``
(recorded ``interrupted``), whichever comes first. Ctrl-C cancels a
measurement whether it runs or waits for a node. Ray is an optional extra
(``pip install 'overnight[ray]'``), imported only when this executor is chosen; its own
log lines stay out of overnight's console.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any

from overnight import secrets
from overnight.errors import ConfigError, OvernightError
from overnight.executors._base import Executor, Job, Measurement
from overnight.executors.node import Code, forget, measure_here
from overnight.git import git_bytes
from overnight.records import Status
from overnight.task import Task

log = logging.getLogger(__name__)

RETRIES = 2  # resubmissions after the Ray worker or node died
NODE_WAIT_S = 300.0  # how long a measurement waits while no live node could run it
_SYSTEM_FAILURES = ("WorkerCrashedError", "NodeDiedError", "OwnerDiedError", "ActorDiedError", "ObjectLostError")
_LOOK_EVERY_S = 2.0  # how often a waiting measurement looks for a node that fits
_PACKS_KEPT = 64  # commits whose packs stay in the object store (one per worker measuring, and some)


def node_wait_s() -> float:
    value = os.environ.get("OVERNIGHT_RAY_NODE_WAIT_S", "")
    try:
        return float(value) if value else NODE_WAIT_S
    except ValueError:
        raise ConfigError(f"OVERNIGHT_RAY_NODE_WAIT_S must be a number of seconds, not {value!r}") from None


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, task: Task, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("the ray executor needs Ray: pip install 'overnight[ray]'") from None
        if address and address.startswith("ray://"):
            # Ray Client needs ray[client] on both ends, matching versions and a tunnel; none of it is tested here.
            raise ConfigError(
                f"--ray-address {address}: a controller outside the cluster (Ray Client, ray://) is not supported; "
                "run `overnight run` on the cluster's head node with --ray-address auto "
                "(examples/cluster/README.md, 'The controller elsewhere')"
            )
        self._ray: Any = ray
        self._started = False
        if not ray.is_initialized():
            # Ray's own lines (its start, the object store's statistics) stay out of overnight's console.
            quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
            if address:
                ray.init(address=address, **quiet)
            else:  # a Ray of its own, even when a cluster already runs on this machine ("local" never joins one)
                ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False, **quiet)
            self._started = True
        self.cpus = task.config.task.num_cpus
        self.gpus = task.config.task.num_gpus
        self.node_wait_s = node_wait_s()
        self._base: tuple[str, str, Any] | None = None  # (cache key, first commit, ref of its pack)
        self._packs: OrderedDict[str, Any] = OrderedDict()  # commit → ref of its pack of new objects
        self._lock = threading.Lock()
        self._check_schedulable()
        self._task = ray.remote(measure_here).options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)

    def _fitting(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The live nodes, and those among them that could run an experiment."""
        nodes = [n for n in self._ray.nodes() if n.get("Alive")]
        fits = [
            n for n in nodes if n["Resources"].get("CPU", 0) >= self.cpus and n["Resources"].get("GPU", 0) >= self.gpus
        ]
        return nodes, fits

    def _request(self, nodes: list[dict[str, Any]]) -> str:
        have = ", ".join(f"{n['Resources'].get('CPU', 0):g} CPU/{n['Resources'].get('GPU', 0):g} GPU" for n in nodes)
        return (
            f"[task] asks for num_cpus = {self.cpus:g} and num_gpus = {self.gpus:g}; the live nodes have "
            f"{have or 'nothing'}"
        )

    def _check_schedulable(self) -> None:
        nodes, fits = self._fitting()
        if not fits:
            self.close()
            raise ConfigError(
                f"no node of the Ray cluster can run an experiment: {self._request(nodes)}. "
                "Lower the request or add such a node"
            )

    def _code(self, job: Job) -> Code:
        """The refs that bring ``job.commit`` to a node (packs made once per commit)."""
        assert job.root is not None, "the worker gives the repository with the commit"
        with self._lock:
            if self._base is None:
                key = hashlib.sha1(f"{job.root.resolve()}:{job.commit}:{os.getpid()}".encode()).hexdigest()[:16]
                whole = git_bytes("pack-objects", "--stdout", "--revs", "-q", cwd=job.root, input=f"{job.commit}\n")
                self._base = (key, job.commit, self._ray.put(whole))
            key, base, base_pack = self._base
            if job.commit != base and job.commit not in self._packs:
                revs = f"{job.commit}\n^{base}\n"
                self._packs[job.commit] = self._ray.put(
                    git_bytes("pack-objects", "--stdout", "--revs", "-q", cwd=job.root, input=revs)
                )
                while len(self._packs) > _PACKS_KEPT:
                    self._packs.popitem(last=False)
            pack = self._packs.get(job.commit)
            return Code(key=key, base=base, base_pack=base_pack, commit=job.commit, pack=pack)

    def measure(self, job: Job, stop: threading.Event | None = None) -> Measurement:
        job = job.resolved()  # the commit travels as git objects: it must be written first
        if not job.commit:
            raise ConfigError("the ray executor needs the experiment's commit")
        code = self._code(job)
        # The controller's environment stays here (the node has its own, scrubbed there); what travels is
        # what was set for this measurement beyond it: a slot's GPU (--gpus).
        own = secrets.environment(keep=job.config.task.pass_env)
        sent = {k: v for k, v in job.env.items() if own.get(k) != v}
        job = replace(job, env={})
        for attempt in range(RETRIES + 1):
            ref = self._task.remote(code, job, sent, self.gpus > 0)
            waited = self._wait(ref, job, stop)
            if waited is not None:
                return waited
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

    def _wait(self, ref: Any, job: Job, stop: threading.Event | None) -> Measurement | None:
        """Wait for the task: None when it is done; a Measurement when stopped. Raises when no node is left."""
        unfit_since: float | None = None
        next_look = time.monotonic() + _LOOK_EVERY_S
        while True:
            done, _ = self._ray.wait([ref], timeout=0.5)
            if done:
                return None
            if stop is not None and stop.is_set():
                self._ray.cancel(
                    ref, force=True
                )  # running or still waiting for a node (the watchdog ends its commands)
                return Measurement(Status.INTERRUPTED, "interrupted while running on the Ray cluster")
            now = time.monotonic()
            if now < next_look:
                continue
            next_look = now + _LOOK_EVERY_S
            nodes, fits = self._fitting()
            if fits:
                unfit_since = None
                continue
            unfit_since = unfit_since if unfit_since is not None else now
            if self.deadline is not None and now >= self.deadline:  # the night is over: it will not start
                self._ray.cancel(ref, force=True)
                reason = "the run reached --max-time while this measurement waited for a node that could run it"
                _append(job.log_path, f"### overnight: {reason}\n")
                return Measurement(Status.INTERRUPTED, reason)
            if now - unfit_since >= self.node_wait_s:
                self._ray.cancel(ref, force=True)
                message = (
                    f"experiment {job.experiment_id} waited {self.node_wait_s:g}s while no live node of the Ray "
                    f"cluster could run it ({self._request(nodes)}): the node it needs is gone. Bring such a node "
                    "back and resume the run (OVERNIGHT_RAY_NODE_WAIT_S sets how long to wait)"
                )
                _append(job.log_path, f"### overnight: {message}\n")
                raise OvernightError(message)

    def close(self) -> None:
        if self._base is not None and self._ray.is_initialized():
            self._forget(self._base[0])
            self._base = None
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
            self._started = False

    def _forget(self, key: str) -> None:
        """Remove the run's cache from every live node (a node that does not answer in time keeps it)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        task = self._ray.remote(forget)
        refs = [
            task.options(
                num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote(key)
            for n in self._ray.nodes()
            if n.get("Alive")
        ]
        self._ray.wait(refs, num_returns=len(refs), timeout=30)


def _append(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)
