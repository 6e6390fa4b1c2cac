"""Plotly ``FigureWidget``s that load plotly's widget bundle once per page, not once per chart.

A plain ``go.FigureWidget`` is an anywidget whose ``_esm`` trait is plotly's whole widget bundle
(about 5 MB of JavaScript): every chart sends it through the kernel's websocket and the browser
parses and runs it again, so a page with four charts moves 20 MB before its first chart draws.
Under ``workbench up`` (which serves the bundle as a static file, see :func:`serve_bundle`, and sets
:data:`BUNDLE_ENV` for its kernels) :func:`figure_widget` makes charts whose ``_esm`` is a few lines
that import the bundle by URL: fetched once (then revalidated by the browser cache) and evaluated once
per page, and their template keeps the defaults of the trace types they draw only (:func:`light_figure`).
Anywhere else (JupyterLab, a plain Voilà) it is plotly's own ``FigureWidget``.
"""
from __future__ import annotations

import os
import shutil
from functools import cache
from pathlib import Path
from typing import Any

#: set (to "1") in the environment of the kernels of a server that serves the bundle (`workbench up`)
BUNDLE_ENV = "WORKBENCH_PLOTLY_BUNDLE"
#: the bundle's folder under the server's labextensions URL
BUNDLE_DIR = "workbench-plotly"
BUNDLE_FILE = "widgetbundle.js"

#: the chart's module: plotly's bundle imported from the page's labextensions URL (Voilà's page config)
SHIM = f"""
const el = document.getElementById("jupyter-config-data");
const root = (el ? JSON.parse(el.textContent).fullLabextensionsUrl : null) || "/voila/labextensions";
const mod = await import(new URL(`${{root}}/{BUNDLE_DIR}/{BUNDLE_FILE}`, window.location.href).href);
export default mod.default;
"""


def plotly_bundle() -> Path:
    """plotly's widget bundle (the JavaScript every ``FigureWidget`` carries)."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / BUNDLE_FILE


def serve_bundle(root: Path) -> Path:
    """Make ``root`` a labextensions folder holding a copy of plotly's bundle (the static file handler
    refuses symlinks that leave its folders) and return it: pass it to Voilà as
    ``VoilaConfiguration.extra_labextensions_path``."""
    where = root / BUNDLE_DIR
    where.mkdir(parents=True, exist_ok=True)
    copy, source = where / BUNDLE_FILE, plotly_bundle().stat()
    if not copy.is_file() or (copy.stat().st_size, copy.stat().st_mtime) != (source.st_size, source.st_mtime):
        tmp = copy.with_suffix(".tmp")
        shutil.copy2(plotly_bundle(), tmp)
        tmp.replace(copy)  # another `workbench up` on this home never serves half a file
    return root


@cache
def _shared_class() -> type:
    import plotly.graph_objects as go

    class SharedBundleFigureWidget(go.FigureWidget):
        """A ``FigureWidget`` whose JavaScript is imported by URL (see the module's docstring)."""

        _esm = SHIM

    return SharedBundleFigureWidget


def warm() -> None:
    """Load plotly's figure validators and widget classes (a chart with a scatter trace and subplots, then
    closed): what the first chart of a page otherwise pays for (~0.25 s of CPU)."""
    import plotly.graph_objects as go

    fig = go.Figure([go.Scatter(x=[0], y=[0]), go.Scatter(x=[0], y=[0], yaxis="y2", mode="markers")],
                    layout={"title": {"text": ""}, "xaxis": {"title": {"text": ""}}, "yaxis2": {"domain": [0, 0.3]},
                            "legend": {"orientation": "h"}, "margin": {"l": 0}})
    figure_widget(fig).close()


def light_figure(figure: Any = None) -> dict[str, Any]:
    """``figure`` (a ``go.Figure``, a dict or None) as a dict whose template keeps the trace defaults of the
    trace types it draws only (scatter when none): a widget validates every trace type its template names,
    and plotly's default template names all ~50 of them (~200 modules, ~7 MB of a dashboard kernel). Its
    traces look the same; a trace of another type added later goes without that type's template defaults.
    (Not ``to_dict()``: it turns numpy arrays into base64 dicts, which a widget does not decode.)"""
    import plotly.graph_objects as go

    fig = figure if isinstance(figure, go.Figure) else go.Figure(figure)  # the default template, unvalidated
    spec = {"data": [t.to_plotly_json() for t in fig.data], "layout": fig.layout.to_plotly_json()}
    template = spec["layout"].get("template")
    if template is not None:
        kinds = {t.get("type", "scatter") for t in spec["data"]} or {"scatter"}
        template["data"] = {k: v for k, v in (template.get("data") or {}).items() if k in kinds}
    return spec


def figure_widget(figure: Any = None) -> Any:
    """A ``go.FigureWidget`` of ``figure`` (a ``go.Figure``, a dict or None), sharing one copy of plotly's
    JavaScript per page and with a :func:`light_figure` template when the server provides the bundle."""
    import plotly.graph_objects as go

    if isinstance(figure, go.FigureWidget):
        return figure
    if not os.environ.get(BUNDLE_ENV):
        return go.FigureWidget(figure)
    return _shared_class()(light_figure(figure))
