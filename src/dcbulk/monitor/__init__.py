"""Watching a run from a browser: a live page in dask's dashboard and an offline HTML report."""
from .page import ROUTE, page_doc, page_state, state_of
from .session import dashboard_page, live_page, page_url, performance_report, recorded
from .state import FileRow, RunState, observers

__all__ = ["ROUTE", "FileRow", "RunState", "dashboard_page", "live_page", "observers",
           "performance_report",
           "page_doc", "page_state", "page_url", "recorded", "state_of"]
