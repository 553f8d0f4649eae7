"""The dashboard's HTTP server: the standard library's ThreadingHTTPServer, read-only.

Routes (GET and HEAD; any other method is answered 405)::

    /                       the page (static/index.html, with app.js and style.css)
    /api/state              {"run": /api/run's answer, "experiments": /api/experiments's}: what the page polls
    /api/run                the run's summary: tag, metric, goal, baseline, best, counts, spend
    /api/experiments        every experiment (Experiment.to_json(), plus its delta)
    /api/experiments/<id>   one experiment with its diff, measurements and log tails
    /api/runs               every run of the task (overnight.views.runs), and which one the page follows

Each /api/ route but /api/runs takes ``?tag=TAG``: that run rather than the one the server
follows (the page's run picker sends it).

Every API request reads the run's ledger anew (:func:`overnight.views.view_of`), so the
page follows a run while its controller writes the ledger (WAL mode: readers never
block the writer). Without a tag, the most recent run of the task is looked up on
every request, so a run started after the dashboard shows up by itself. The task's
repository is located once, when the server starts; diffs of commits are kept (they
never change). Nothing is written: not the ledger, not git, not the logs.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import math
import re
import socket
import sys
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from overnight import git, views
from overnight._version import __version__
from overnight.choices import DEFAULT_HOST, DEFAULT_PORT
from overnight.errors import ConfigError, OvernightError, RunStateError
from overnight.records import Experiment, Note, Status
from overnight.run.paths import check_tag
from overnight.verify import findings as verification
from overnight.views import runs as runlist

log = logging.getLogger(__name__)

TAIL_LINES = views.TAIL_LINES  # lines of each log an experiment's detail carries
MAX_DIFF_CHARS = 500_000  # a diff longer than this is cut (and says so)

# The page's files: URL path → (file in static/, content type). Nothing else is served from disk.
STATIC: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
_PACKAGE = "overnight.views.dashboard"
_EXPERIMENT = re.compile(r"^/api/experiments/(\d{1,18})$")
_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"


# -- the JSON the API answers ---------------------------------------------------------------


def _clean(value: Any) -> Any:
    """``value`` with NaN and infinities made null: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _point(exp: Experiment | None) -> dict[str, Any] | None:
    if exp is None:
        return None
    return {"id": exp.id, "metric": exp.metric, "hypothesis": exp.hypothesis, "runs": exp.runs, "holdout": exp.holdout}


def run_summary(view: views.RunView) -> dict[str, Any]:
    """What ``GET /api/run`` answers."""
    exps, usage = view.experiments, view.usage
    summary: dict[str, Any] = _clean(
        {
            "tag": view.tag,
            "task": view.meta.get("task", ""),
            "branch": git.BRANCH_PREFIX + view.tag,
            "created_at": view.meta.get("created_at", ""),
            "start_commit": view.meta.get("start_commit", ""),
            "metric": view.metric,
            "goal": view.goal.value,
            "running": view.running,
            "baseline": _point(view.baseline),
            "best": _point(view.best),
            "experiments": len(exps),
            "after_baseline": views.tally(view)[0],  # what every view calls "experiments"
            "kept": views.tally(view)[1],
            "state": views.run_state(view),
            "counts": dict(view.counts),
            "last": exps[-1].id if exps else None,
            "tokens_in": usage.tokens_in,
            "tokens_out": usage.tokens_out,
            "tokens": usage.tokens_in + usage.tokens_out,
            "cost_usd": usage.cost_usd,
            "verification": _verified(view),
            "notes": [_note(n) for n in view.notes],
        }
    )
    return summary


def _note(note: Note) -> dict[str, Any]:
    return {"experiment": note.experiment, "worker": note.worker, "agent": note.agent, "at": note.at, "text": note.text}


def _verified(view: views.RunView) -> dict[str, Any] | None:
    """The run's latest `overnight verify` (overnight.verify.findings's JSON), or None."""
    found = verification.latest(view)
    return None if found is None else {**found.to_json(), "scale": verification.scale_text(found.settings)}


def _row(view: views.RunView, exp: Experiment) -> dict[str, Any]:
    """``exp.to_json()`` plus what it is compared with (views.RunView.reference), and the change from it; and
    ``interval``: half the width of its estimate's 95% interval (the progress plot's error bar), None where it
    was measured once; ``judged``: how the judge saw it, in `overnight log`'s words ("within noise": a discard
    that measured better than the best, not enough to keep)."""
    from overnight.views.commands import judged
    from overnight.views.report import interval

    reference = view.reference(exp)[0] if exp.status is not Status.BASELINE else None
    delta = exp.metric - reference if exp.metric is not None and reference is not None else None
    row = {**exp.to_json(), "parent_metric": reference, "delta": delta, "interval": interval(view, exp)}
    return {**row, "judged": judged(view, exp)}


def experiment_rows(view: views.RunView) -> list[dict[str, Any]]:
    """What ``GET /api/experiments`` answers."""
    rows: list[dict[str, Any]] = _clean([_row(view, e) for e in view.experiments])
    return rows


def run_state(view: views.RunView) -> dict[str, Any]:
    """What ``GET /api/state`` answers: the summary and every experiment, from one read of the ledger."""
    return {"run": run_summary(view), "experiments": experiment_rows(view)}


def experiment_detail(view: views.RunView, experiment_id: int) -> dict[str, Any]:
    """What ``GET /api/experiments/<id>`` answers; ConfigError when the run has no such experiment."""
    exp = view.get(experiment_id)
    diff = views.experiment_diff(view, exp)
    cut = len(diff.text) > MAX_DIFF_CHARS
    detail: dict[str, Any] = _clean(
        {
            **_row(view, exp),
            "diff": diff.text[:MAX_DIFF_CHARS] if cut else diff.text,
            "diff_source": diff.source,
            "diff_truncated": cut,
            "diff_error": diff.error,
            "measurements": [dataclasses.asdict(m) for m in view.measurements.get(exp.id, [])],
            "notes": [n.text for n in view.notes if n.experiment == exp.id],
            "logs": {
                "experiment": views.tail(view.paths.log(exp.id), TAIL_LINES),
                "agent": views.tail(view.paths.log(exp.id, "agent"), TAIL_LINES),
            },
        }
    )
    return detail


# -- the server -------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_of(header: str) -> str:
    """The host name of a Host header (without its port)."""
    header = header.strip()
    if header.startswith("["):
        return header[: header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class DashboardServer(ThreadingHTTPServer):
    """Serves the dashboard of the runs of the task in ``directory`` (one run, with ``tag``)."""

    daemon_threads = True

    def __init__(self, directory: Path, tag: str | None, host: str, port: int) -> None:
        # Located once: a missing folder or one outside git fails now, and no request runs git to find it again.
        self.root, self.rel = views.locate(directory)
        self.directory = directory
        self.tag = check_tag(tag) if tag else None
        # A page bound to this machine answers only to its own names: no DNS rebinding from a web page.
        self.local_only = _is_loopback(host)
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host.strip("[]"), port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):  # the browser went away mid-answer
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), int(self.server_address[1])
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def view(self, tag: str | None = None) -> views.RunView:
        """The run ``tag`` (checked), else the one the server follows: ``--tag``'s, or the most recent."""
        return views.view_of(self.root, self.rel, check_tag(tag) if tag else self.tag)

    def runs(self) -> dict[str, Any]:
        """What ``GET /api/runs`` answers: the task's runs, oldest first, and the one followed without ?tag."""
        found = runlist.lines(self.root, self.rel)
        followed = self.tag or (found[-1].tag if found else None)
        answer: dict[str, Any] = _clean({"runs": [r.to_json() for r in found], "followed": followed})
        return {**answer, "pinned": self.tag is not None}


def serve(
    directory: Path, tag: str | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> DashboardServer:
    """Bind the dashboard of ``directory``'s runs (``tag``; the most recent run when None) to ``host:port``.

    The server is bound and listening but answers nothing until :func:`run_forever` (or
    ``server.serve_forever()``, e.g. in a thread) runs; ``port=0`` takes a free port, which
    ``server.url`` names. Raises ConfigError or GitError for a folder that is no task, and
    OSError when the port is taken.
    """
    return DashboardServer(directory, tag, host, port)


def run_forever(server: DashboardServer) -> None:
    """Answer requests until Ctrl-C (or ``server.shutdown()`` from another thread), then close the socket."""
    try:
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    server_version = f"overnight-dashboard/{__version__}"

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def __getattr__(self, name: str) -> Callable[[], None]:
        # Every other method (POST, PUT, DELETE, ...): the base class looks for do_<METHOD>.
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(name)

    def _not_allowed(self) -> None:
        message = {"error": f"{self.command} is not allowed: the dashboard is read-only"}
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, _json(message), "application/json", False, {"Allow": "GET, HEAD"})

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _answer(self, head: bool) -> None:
        path = urlsplit(self.path).path
        if self.server.local_only and not _is_loopback(_host_of(self.headers.get("Host", "localhost"))):
            self._error(HTTPStatus.FORBIDDEN, "this dashboard answers only to localhost", head)
            return
        if path in STATIC:
            name, content_type = STATIC[path]
            body = resources.files(_PACKAGE).joinpath("static", name).read_bytes()
            self._send(HTTPStatus.OK, body, content_type, head)
            return
        route = self._route(path)
        if route is None:
            self._error(HTTPStatus.NOT_FOUND, f"no such page: {path}", head)
            return
        tag = parse_qs(urlsplit(self.path).query).get("tag", [""])[0] or None
        try:
            payload = self.server.runs() if path == "/api/runs" else route(self.server.view(tag))
        except (RunStateError, ConfigError) as err:  # no run yet, or no such experiment
            self._error(HTTPStatus.NOT_FOUND, str(err), head)
            return
        except OvernightError as err:
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, str(err), head)
            return
        except Exception as err:  # one bad request must not take the page down
            log.exception("dashboard: %s failed", path)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(err).__name__}: {err}", head)
            return
        self._send(HTTPStatus.OK, _json(payload), "application/json", head)

    @staticmethod
    def _route(path: str) -> Callable[[views.RunView], Any] | None:
        if path == "/api/state":
            return run_state
        if path == "/api/run":
            return run_summary
        if path == "/api/experiments":
            return experiment_rows
        if path == "/api/runs":
            return lambda view: None  # answered by the server itself: it needs no run
        match = _EXPERIMENT.match(path)
        if match:
            experiment_id = int(match.group(1))
            return lambda view: experiment_detail(view, experiment_id)
        return None

    def _error(self, status: HTTPStatus, message: str, head: bool) -> None:
        self._send(status, _json({"error": message}), "application/json", head)

    def _send(
        self, status: HTTPStatus, body: bytes, content_type: str, head: bool, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", _CSP)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)


def _json(payload: Any) -> bytes:
    return json.dumps(payload, allow_nan=False, ensure_ascii=False).encode("utf-8")
