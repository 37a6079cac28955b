"""The run's HTML report: one self-contained file that opens offline.

Bokeh's standalone :func:`bokeh.embed.file_html` with :data:`bokeh.resources.INLINE` (its
JavaScript inside the file: no CDN, no web fonts) draws static plots of a
:class:`~dcbulk.monitor.state.RunState`: throughput over time, and histograms of file size,
compression ratio and time per file, so a run of 100 000 files stays as small as one of
ten. A plain HTML table lists the files (failures first) up to ``table_rows``, then points
to the JSON report; the options, versions and the manifest's path close the page.
"""
from __future__ import annotations

import html
import json
import os
import platform
from importlib import metadata

import numpy as np

from ..nofollow import replace_nofollow
from .page import summary_html
from .state import RunState, throughput_series

__all__ = ["TABLE_ROWS", "render_html_report", "write_html_report"]

#: files listed in the report's table (all of them are in the JSON report)
TABLE_ROWS = 1000
#: points of the report's throughput series
REPORT_BINS = 80
_VERSIONS = ("dcbulk", "dask", "distributed", "h5py", "hdf5plugin", "numpy", "bokeh", "dclab",
             "dcnum")

_TEMPLATE = """
{% block postamble %}
<style>
  body { font-family: sans-serif; padding: 1em 2em; }
  table.files, table.kv { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
  table.files td, table.files th, table.kv td, table.kv th {
    border: 1px solid #ccc; padding: 2px 6px; text-align: left; }
  tr.failed td { background: #fdd; }
</style>
{% endblock %}
{% block contents %}
<h1>dcbulk {{ command }} report</h1>
{{ summary }}
{{ super() }}
<h2>Files</h2>
{{ table_note }}
{{ table }}
<h2>Options</h2>
{{ options }}
<h2>Versions</h2>
{{ versions }}
<p>Manifest: <code>{{ manifest }}</code></p>
{% endblock %}
"""


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _VERSIONS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "-"
    return out


def _kv_table(pairs: dict) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_text(v))}</td></tr>"
                   for k, v in pairs.items())
    return f"<table class='kv'>{rows}</table>"


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _mb(n: int) -> str:
    return f"{n / 1e6:,.3f}"


def _file_table(state: RunState, limit: int) -> tuple[str, str]:
    """The table of files (failures first, then in the order they settled) and its note."""
    rows = list(state.rows)
    failed = [r for r in rows if r.status == "failed"]
    shown = (failed + [r for r in rows if r.status != "failed"])[:limit]
    top = _common_dir([r.source for r in shown])
    body = []
    for r in shown:
        name = os.path.relpath(r.source, top) if top else r.source
        ratio = f"{r.ratio:.2f}" if r.ratio is not None and r.ratio == r.ratio else ""
        body.append(f"<tr class='file-row {html.escape(r.status)}'>"
                    f"<td>{html.escape(r.status)}</td><td>{html.escape(name)}</td>"
                    f"<td>{_mb(r.bytes_in)}</td><td>{_mb(r.bytes_out)}</td><td>{ratio}</td>"
                    f"<td>{r.seconds:.2f}</td><td>{html.escape(r.error)}</td></tr>")
    head = ("<tr><th>status</th><th>source</th><th>MB read</th><th>MB written</th>"
            "<th>ratio</th><th>seconds</th><th>error</th></tr>")
    table = f"<table class='files'><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"
    left = state.total_files - len(rows)
    note = f"<p>{len(shown)} of {len(rows)} settled files listed"
    if top:
        note += f" (sources below <code>{html.escape(top)}</code>)"
    if len(shown) < len(rows):
        where = (f"<a href='{html.escape(_href(state.json_report))}'>"
                 f"{html.escape(state.json_report)}</a>" if state.json_report
                 else "the JSON report (--report)")
        note += f" (failures first); every file is in {where}"
    if left > 0:
        note += f"; {left} files did not settle ({html.escape(state.outcome)})"
    return table, note + ".</p>"


def _common_dir(paths: list[str]) -> str:
    """The directory all ``paths`` are below ('' when none is shared or they are relative)."""
    if not paths or not all(os.path.isabs(p) for p in paths):
        return ""
    try:
        top = os.path.commonpath(paths)
    except ValueError:
        return ""
    if top in paths:  # a single file: its directory
        top = os.path.dirname(top)
    return "" if top == os.sep else top


def _href(path: str) -> str:
    return os.path.basename(path) if not os.path.isabs(path) else "file://" + path


def _histogram(values, title: str, x_label: str, *, log: bool = False):
    from bokeh.plotting import figure
    fig = figure(height=240, width=420, title=title, x_axis_label=x_label,
                 y_axis_label="files", tools="", toolbar_location=None,
                 x_axis_type="log" if log else "linear")
    values = np.asarray([v for v in values if v is not None and v == v and (v > 0 or not log)],
                        dtype=float)
    counts, edges = np.zeros(0), np.zeros(1)  # no file: an empty plot (Bokeh warns of one
    if values.size:                           # without renderers: W-1000 on the terminal)
        lo, hi = float(values.min()), float(values.max())
        if log:
            edges = np.geomspace(lo, hi * 1.0001 if hi > lo else lo * 2, 41)
        else:
            edges = np.linspace(lo, hi if hi > lo else lo + 1, 41)
        counts, edges = np.histogram(values, bins=edges)
    fig.quad(top=counts, bottom=0, left=edges[:-1], right=edges[1:], fill_alpha=0.7,
             line_color="white")
    return fig


def _plots(state: RunState):
    from bokeh.layouts import column, row
    from bokeh.plotting import figure
    rows = list(state.rows)
    seconds, rates = throughput_series(rows, state.elapsed(), bins=REPORT_BINS)
    tp = figure(height=260, width=860, title="throughput (MB/s of sources finished)",
                x_axis_label="seconds since start", y_axis_label="MB/s", tools="",
                toolbar_location=None)
    tp.line(seconds, rates, line_width=2)
    work = [r for r in rows if r.status in ("done", "failed")]
    return column(tp,
                  row(_histogram([r.bytes_in / 1e6 for r in work], "file size",
                                 "MB (source)", log=True),
                      _histogram([r.ratio for r in rows if r.status == "done"],
                                 "compression ratio", "feature bytes / stored bytes")),
                  row(_histogram([r.seconds for r in work], "time per file", "seconds",
                                 log=True)))


def render_html_report(state: RunState, *, table_rows: int = TABLE_ROWS) -> str:
    """The report of ``state`` as one HTML document (Bokeh's JavaScript inline)."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE
    table, note = _file_table(state, table_rows)
    variables = {"command": html.escape(state.command), "summary": summary_html(state.snapshot()),
                 "table": table, "table_note": note, "options": _kv_table(state.options),
                 "versions": _kv_table(_versions()),
                 "manifest": html.escape(state.manifest or "none")}
    return file_html(_plots(state), INLINE, title=f"dcbulk {state.command} report",
                     template=_TEMPLATE, template_variables=variables)


def write_html_report(state: RunState, path: str | os.PathLike, *,
                      table_rows: int = TABLE_ROWS) -> str:
    """Write :func:`render_html_report` to ``path`` (through a temporary file, never over a
    link or a file that is not regular: :func:`~dcbulk.nofollow.replace_nofollow`); return
    it."""
    text = render_html_report(state, table_rows=table_rows)

    def write(tmp: str) -> None:
        # undecodable file names (surrogate escapes) are shown as \udcxx, not refused
        with open(tmp, "w", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write(text)
    return replace_nofollow(path, write)
