"""`overnight dashboard`: a local, read-only web page of a run that updates while the run goes on.

::

    from overnight.views.dashboard import serve, run_forever

    server = serve(Path("my-task"), tag=None, port=8765)  # bound to 127.0.0.1, not answering yet
    print(server.url)
    run_forever(server)  # until Ctrl-C

In tests, ``serve(..., port=0)`` takes a free port and ``threading.Thread(target=server.serve_forever)``
answers in the background until ``server.shutdown()``. See :mod:`overnight.views.dashboard.server` for the routes.
"""

from __future__ import annotations

from overnight.choices import DEFAULT_HOST, DEFAULT_PORT
from overnight.views.dashboard.server import DashboardServer, run_forever, serve

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "DashboardServer", "run_forever", "serve"]
