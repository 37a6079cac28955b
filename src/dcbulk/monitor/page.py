"""The live dcbulk page of dask's dashboard: a Bokeh server document over the run's state.

The state (:class:`~dcbulk.monitor.state.RunState`) hangs on the scheduler as the plugin
that :func:`dcbulk.monitor.session.live_page` adds to the scheduler running in dcbulk's own
process; :func:`page_doc` (the Bokeh application distributed builds for the route
:data:`ROUTE`) finds it through the scheduler it is given and redraws every second. Files in
flight are the archive's file tasks (keys ``dcbulk-file-...``) the scheduler has
processing, read on the scheduler's event loop where the page runs.
"""
from __future__ import annotations

import html

from .state import RunState

__all__ = ["PLUGIN_NAME", "ROUTE", "FILE_KEY_PREFIX", "files_in_flight",
           "page_doc", "page_state", "state_of", "summary_html"]


#: the name of the plugin that holds the run's state on the scheduler
PLUGIN_NAME = "dcbulk-run-state"
#: the page's route in the dashboard ("individual-" routes are listed in individual-plots.json)
ROUTE = "/individual-dcbulk"
#: keys of the tasks that make one output file (``convert_archive``'s file tasks)
FILE_KEY_PREFIX = "dcbulk-file-"
#: milliseconds between redraws of an open page
INTERVAL_MS = 1000
#: points of the page's throughput series (files settle in bursts: wide bins read better)
PAGE_BINS = 40


def state_of(scheduler) -> RunState | None:
    """The run state on ``scheduler`` (None: no dcbulk run there)."""
    plugin = getattr(scheduler, "plugins", {}).get(PLUGIN_NAME)
    return getattr(plugin, "state", None)


def files_in_flight(scheduler, names: dict[str, str], limit: int = 200) -> list[dict]:
    """The file tasks ``scheduler`` has processing: file name (by ``names``: key without its
    index -> name; else the key) and worker. Call on the scheduler's event loop."""
    out = []
    for key, ts in list(scheduler.tasks.items()):
        if isinstance(key, str) and key.startswith(FILE_KEY_PREFIX) and ts.state == "processing":
            name = names.get(key.rpartition("-")[0], key)
            worker = ts.processing_on.address if ts.processing_on is not None else ""
            out.append({"file": name, "worker": worker})
            if len(out) >= limit:
                break
    return out


def page_state(scheduler, *, bins: int = PAGE_BINS) -> dict | None:
    """What the page shows: the state's snapshot (a throughput series of at most ``bins``
    points) plus the files in flight (None: no run)."""
    state = state_of(scheduler)
    if state is None:
        return None
    snap = state.snapshot(bins=bins)
    snap["in_flight"] = files_in_flight(scheduler, state.names)
    return snap


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def summary_html(snap: dict | None) -> str:
    """The page's (and the report's) summary table as HTML."""
    if snap is None:
        return "<p>No dcbulk run on this scheduler.</p>"
    c = snap["counts"]
    ratio = f"{snap['ratio']:.2f}" if snap["ratio"] else "-"
    cells = [("run", f"dcbulk {snap['command']} ({snap['outcome']}), "
                     f"started {snap['started']}"),
             ("files", f"{c.get('done', 0)} done, {c.get('skipped', 0)} skipped, "
                       f"{c.get('failed', 0)} failed, {snap['remaining']} remaining "
                       f"of {snap['total_files']}"),
             ("bytes", f"{_mb(snap['bytes_in'])} read, {_mb(snap['bytes_out'])} written; "
                       f"compression ratio {ratio}"),
             ("rate", f"{snap['rate_bytes_per_second'] / 1e6:,.1f} MB/s, elapsed "
                      f"{_duration(snap['elapsed_seconds'])}, ETA {_duration(snap['eta_seconds'])}")]
    rows = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{k}</th>"
                   f"<td class='dcbulk-{k}'>{html.escape(v)}</td></tr>" for k, v in cells)
    return f"<table class='dcbulk-summary'>{rows}</table>"


def page_doc(scheduler, extra, doc) -> None:
    """Build the dcbulk page for a Bokeh server session (distributed's application signature)."""
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource, DataTable, Div, TableColumn
    from bokeh.plotting import figure
    summary = Div(text=summary_html(None), sizing_mode="stretch_width")
    series = ColumnDataSource({"seconds": [], "mb_per_second": []})
    fig = figure(height=260, sizing_mode="stretch_width", title="throughput (MB/s of sources)",
                 x_axis_label="seconds since start", y_axis_label="MB/s", tools="")
    fig.line("seconds", "mb_per_second", source=series, line_width=2)
    flight = ColumnDataSource({"file": [], "worker": []})
    flight_table = DataTable(source=flight, height=160, sizing_mode="stretch_width",
                             columns=[TableColumn(field="file", title="file in flight"),
                                      TableColumn(field="worker", title="worker")])
    fails = ColumnDataSource({"source": [], "error": []})
    fail_table = DataTable(source=fails, height=200, sizing_mode="stretch_width",
                           columns=[TableColumn(field="source", title="failed file"),
                                    TableColumn(field="error", title="reason")])
    fail_title = Div(text="<b>failures</b>")

    def update() -> None:
        snap = page_state(scheduler, bins=PAGE_BINS)
        summary.text = summary_html(snap)
        if snap is None:
            return
        series.data = {"seconds": snap["throughput"]["seconds"],
                       "mb_per_second": snap["throughput"]["mb_per_second"]}
        flight.data = {k: [f[k] for f in snap["in_flight"]] for k in ("file", "worker")}
        fails.data = {k: [f[k] for f in snap["failures"]] for k in ("source", "error")}
        fail_title.text = (f"<b>failures ({snap['failures_total']}; the newest "
                           f"{len(snap['failures'])} here)</b>")

    update()
    doc.add_periodic_callback(update, INTERVAL_MS)
    doc.title = "dcbulk: run"
    doc.add_root(column(Div(text="<h3>dcbulk run</h3>"), summary, fig, flight_table,
                        fail_title, fail_table, sizing_mode="stretch_width"))
