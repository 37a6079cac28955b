"""The run's state as JSON over the dashboard's HTTP server: ``/dcbulk/run.json``.

distributed imports the modules named in ``distributed.scheduler.http.routes`` when its
scheduler starts and serves their ``routes``; :func:`dcbulk.monitor.session.dashboard_page`
names this one. The handler reads the state on the scheduler's event loop, as the page does.
"""
from __future__ import annotations

import json

from distributed.http.utils import RequestHandler

from .page import page_state

__all__ = ["JSON_ROUTE", "RunStateJSON", "routes"]

#: the route of the run's state as JSON, below the dashboard's address
JSON_ROUTE = "dcbulk/run.json"


class RunStateJSON(RequestHandler):
    """``GET``: the page's state (404 while no dcbulk run is on the scheduler)."""

    def get(self) -> None:
        snap = page_state(self.server)
        if snap is None:
            self.set_status(404)
            snap = {"error": "no dcbulk run on this scheduler"}
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(snap))


routes: list[tuple] = [(JSON_ROUTE, RunStateJSON, {})]
