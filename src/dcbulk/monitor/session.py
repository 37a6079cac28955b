"""Wiring a run to its monitors: the dashboard page's registration, the state on the
scheduler, and the JSON and HTML reports written however the run ends.

distributed builds its dashboard's Bokeh applications from
``distributed.dashboard.scheduler.applications`` and its plain routes from the modules in
``distributed.scheduler.http.routes`` when a scheduler starts, so :func:`dashboard_page`
must surround the start of the cluster. LocalCluster and dask-jobqueue clusters run their
scheduler in this process: :func:`live_page` puts the run's state on it. A scheduler dcbulk
does not own (``--scheduler``, ``--scheduler-file``) gets no page: one line says so.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import TextIO

import dask

from ..errors import DcbulkError, one_line
from ..nofollow import replace_nofollow, write_nofollow
from .page import PLUGIN_NAME, ROUTE, page_doc
from .report_html import write_html_report
from .state import RunState

__all__ = ["HTTP_MODULE", "dashboard_page", "live_page", "page_url", "performance_report",
           "recorded", "write_json_report"]

#: the module distributed imports for the page's JSON route
HTTP_MODULE = "dcbulk.monitor.http"


@contextlib.contextmanager
def dashboard_page() -> Iterator[None]:
    """Within the block, schedulers that start serve the dcbulk page and its JSON route.

    The page's route is added to distributed's applications for the block only (a
    dashboard keeps the applications it was built with).
    """
    try:
        from distributed.dashboard import scheduler as dashboard
    except ImportError:  # no (suitable) bokeh: distributed serves no dashboard either
        dashboard = None
    if dashboard is None:
        yield
        return
    routes = list(dask.config.get("distributed.scheduler.http.routes", []) or [])
    added = ROUTE not in dashboard.applications
    if added:
        dashboard.applications[ROUTE] = page_doc
    try:
        with dask.config.set({"distributed.scheduler.http.routes": [*routes, HTTP_MODULE]}):
            yield
    finally:
        if added:
            dashboard.applications.pop(ROUTE, None)


def page_url(dashboard_link: str | None) -> str | None:
    """The page's address next to dask's dashboard link (None without a dashboard)."""
    if not dashboard_link:
        return None
    base = dashboard_link.rsplit("/status", 1)[0] if dashboard_link.endswith("/status") \
        else dashboard_link.rstrip("/")
    return base + ROUTE


@functools.cache
def _plugin_class() -> type:
    """The scheduler plugin that holds a run's state for the page (no hooks: the client
    feeds the state, the page reads it). Made on first use: it subclasses distributed's
    ``SchedulerPlugin``, and a run made in dcbulk's own process does without distributed."""
    from distributed.diagnostics.plugin import SchedulerPlugin

    class RunStatePlugin(SchedulerPlugin):
        name = PLUGIN_NAME

        def __init__(self, state: RunState):
            self.state = state
    return RunStatePlugin


def _own_scheduler(cluster):
    from distributed import Scheduler
    scheduler = getattr(cluster, "scheduler", None)
    return scheduler if isinstance(scheduler, Scheduler) else None


def _serves_page(scheduler) -> bool:
    """Whether the dashboard of ``scheduler`` was built with the dcbulk page."""
    apps = getattr(getattr(scheduler, "http_application", None), "applications", None) or []
    return any(path.rstrip("/").endswith(ROUTE) for app in apps
               for path in getattr(app, "app_paths", ()))


@contextlib.contextmanager
def live_page(state: RunState, client, cluster, *, stream: TextIO | None = None,
              quiet: bool = False) -> Iterator[str | None]:
    """Put ``state`` on the in-process scheduler of ``cluster`` for the block; yield the
    page's URL (None, after one line on ``stream`` unless ``quiet``, when there is no such
    scheduler or no dashboard)."""
    scheduler = _own_scheduler(cluster)
    url = page_url(getattr(client, "dashboard_link", None)) if scheduler is not None else None
    if url is None or not _serves_page(scheduler):
        why = ("a scheduler dcbulk does not own" if scheduler is None
               else "a scheduler without a dashboard")
        if not quiet:
            print(f"dcbulk: the dcbulk dashboard page is not available on {why}; going on",
                  file=stream or sys.stderr, flush=True)
        yield None
        return

    async def add() -> None:
        scheduler.add_plugin(_plugin_class()(state), name=PLUGIN_NAME, idempotent=False)

    async def remove() -> None:
        if PLUGIN_NAME in scheduler.plugins:
            scheduler.remove_plugin(name=PLUGIN_NAME)

    client.sync(add)
    state.page_url = url
    try:
        yield url
    finally:
        with contextlib.suppress(Exception):  # the scheduler may be gone already
            client.sync(remove)


@contextlib.contextmanager
def recorded(state: RunState, html_report: str | None = None,
             json_doc: Callable[[], dict] | None = None) -> Iterator[RunState]:
    """End ``state`` with the run's outcome and write its reports, also when the run fails
    or is interrupted: the JSON report (``json_doc()`` with the ``outcome``) to
    ``state.json_report`` where both are set, then the HTML report (if asked; it links to
    the JSON one). A report that cannot be written is one line on stderr."""
    outcome = "finished"
    try:
        yield state
    except KeyboardInterrupt:
        outcome = "interrupted"
        raise
    except BaseException as exc:
        outcome = f"failed: {type(exc).__name__}: {one_line(exc, 300)}"
        raise
    finally:
        state.end(outcome)
        if state.json_report and json_doc is not None:
            _write_report(state, "JSON", state.json_report, lambda path: write_json_report(
                {**json_doc(), "outcome": state.outcome}, path))
        if html_report:
            _write_report(state, "HTML", html_report, lambda path: write_html_report(state, path))


@contextlib.contextmanager
def performance_report(state: RunState, path: str | None) -> Iterator[None]:
    """dask's performance report of what runs inside (resources inline: it opens offline),
    written as the HTML report is: through a temporary sibling, never over a link or a file
    that is not regular (dask's own writer would block on a FIFO); one that cannot be
    written is one line on stderr (:func:`_write_report`). Needs the run's client."""
    if not path:
        yield
        return
    from distributed import performance_report as dask_report
    report = dask_report(filename=path, mode="inline")  # written to a temporary sibling
    report.__enter__()
    try:
        yield
    finally:
        def write(tmp: str) -> None:
            report.filename = tmp
            report.__exit__(None, None, None)
        _write_report(state, "performance", path, lambda p: replace_nofollow(p, write))


def write_json_report(doc: dict, path: str | os.PathLike) -> None:
    """Write ``doc`` as indented JSON to ``path`` (never through a link)."""
    write_nofollow(path, (json.dumps(doc, indent=2, default=str) + "\n").encode())


def _write_report(state: RunState, kind: str, path: str,
                  write: Callable[[str], object]) -> None:
    """Write one report; one that cannot be written is one line on stderr, and its path
    is kept in ``state.unwritten`` (the command's exit status says so)."""
    try:
        write(path)
    except (OSError, DcbulkError) as exc:
        state.unwritten.append(path)
        print(f"dcbulk: the {kind} report {path} could not be written "
              f"({one_line(exc, 200)})", file=sys.stderr)
