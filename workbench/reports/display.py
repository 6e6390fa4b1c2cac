"""Displaying report figures so they render live in Jupyter *and* in a self-contained, offline HTML export.

A :class:`ReportFigure` offers two representations: the Plotly mimetype (JupyterLab's Plotly
renderer draws it) and ``text/html`` (what nbconvert's HTML export keeps). The first figure a
kernel displays carries plotly.js inline, so the exported page needs no CDN.
"""
from __future__ import annotations

import json
from typing import Any

import plotly.graph_objects as go

PLOTLY_MIME = "application/vnd.plotly.v1+json"
SUMMARY_MIME = "application/vnd.workbench.report-summary+json"
_state = {"plotlyjs_sent": False}


def plotlyjs_tag() -> str:
    """plotly.js as one inline ``<script>``; an AMD loader on the page (require.js) is hidden while it runs."""
    from plotly.offline import get_plotlyjs

    return (
        "<script>window.__wbDefine = window.define; window.define = undefined;</script>"
        f'<script type="text/javascript">{get_plotlyjs()}</script>'
        "<script>window.define = window.__wbDefine;</script>"
    )


def reset_plotlyjs() -> None:
    """Make the next displayed figure carry plotly.js again (e.g. for a new export)."""
    _state["plotlyjs_sent"] = False


class ReportFigure:
    """A Plotly figure wrapped for reports; ``.figure`` is the ``go.Figure``."""

    def __init__(self, figure: go.Figure):
        self.figure = figure

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        html = self.figure.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})
        if not _state["plotlyjs_sent"]:
            html = plotlyjs_tag() + html
            _state["plotlyjs_sent"] = True
        return {PLOTLY_MIME: json.loads(self.figure.to_json()), "text/html": html, "text/plain": repr(self)}

    def __repr__(self) -> str:
        title = self.figure.layout.title.text or "figure"
        return f"<ReportFigure: {title}>"


class Summary:
    """A one-line run summary for people, with the key metrics as JSON for :func:`run_report` to collect."""

    def __init__(self, text: str, data: dict[str, Any]):
        self.text, self.data = text, data

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {SUMMARY_MIME: self.data, "text/plain": self.text}

    def __repr__(self) -> str:
        return self.text
