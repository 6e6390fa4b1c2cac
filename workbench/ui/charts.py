"""Plotly ``FigureWidget``s that load plotly's widget bundle once per page, not once per chart.

A plain ``go.FigureWidget`` is an anywidget whose ``_esm`` trait is plotly's whole widget bundle
(about 5 MB of JavaScript): every chart sends it through the kernel's websocket and the browser
parses and runs it again, so a page with four charts moves 20 MB before its first chart draws.
Under ``workbench up`` (which serves the bundle as a static file, see :func:`serve_bundle`, and sets
:data:`BUNDLE_ENV` for its kernels) :func:`figure_widget` makes charts whose ``_esm`` is a few lines
that import the bundle by URL: fetched once (then revalidated by the browser cache) and evaluated once
per page after the page's first widgets painted, and their template keeps the defaults of the trace types
they draw only (:func:`light_figure`); their kernel keeps plotly's validators of those types only
(:class:`LeanValidators`).
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

#: the chart's module: plotly's bundle imported from the page's labextensions URL (Voilà's page config), once
#: the page's first widgets have painted and the browser has gone idle (running the bundle takes it ~1-1.5 s,
#: in which nothing paints nor scrolls), 1.5 s after the page showed at most; a page with no ``.wb-page``
#: waits 3 s at most
SHIM = f"""
await new Promise(done => {{
  const idle = () => (window.requestIdleCallback || setTimeout)(() => setTimeout(done, 300), {{timeout: 1200}});
  const painted = () => {{ requestAnimationFrame(() => setTimeout(idle, 0)); setTimeout(done, 1500); }};
  if (document.querySelector(".wb-page")) return painted();
  const seen = new MutationObserver(() => {{
    if (document.querySelector(".wb-page")) {{ seen.disconnect(); painted(); }}
  }});
  seen.observe(document.body, {{childList: true, subtree: true}});
  setTimeout(() => {{ seen.disconnect(); done(); }}, 3000);
}});
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
        """A ``FigureWidget`` whose JavaScript is imported by URL (see the module's docstring).

        No page registers ``on_change`` callbacks, so none are dispatched: plotly dispatched each default the
        browser computed (every layout and trace property plotly.js fills in) by building its object, ~35
        graph_objs modules and ~3 MB in the kernel of a page with charts."""

        _esm = SHIM

        def _dispatch_layout_change_callbacks(self, relayout_data: Any) -> None:
            pass

        def _dispatch_trace_change_callbacks(self, restyle_data: Any, trace_indexes: Any) -> None:
            pass

    return SharedBundleFigureWidget


#: the trace types (top-level keys of plotly's validator table) whose validators a dashboard kernel keeps
PAGE_TRACES = frozenset({"layout", "data", "frames", "scatter", "histogram", "heatmap", "bar", "candlestick"})


class LeanValidators:
    """plotly's validator table (``ValidatorCache._json_cache``: 10,000 entries, ~8 MB once parsed, kept for
    good) with the entries of :data:`PAGE_TRACES` only (~5 MB less per kernel); a lookup of anything else
    loads the whole table, once, so every figure still validates as plotly's own table would."""

    def __init__(self, path: Path, keep: frozenset[str] = PAGE_TRACES):
        import json
        import re

        self.path = path
        self.full: dict[str, Any] | None = None
        self.kept: dict[str, Any] = {}
        text, decode, gap = path.read_text(), json.JSONDecoder().raw_decode, re.compile(r"[\s,:]*")

        def skip(i: int) -> int:
            found = gap.match(text, i)
            assert found is not None  # the pattern matches the empty string too
            return found.end()

        i = text.index("{") + 1
        while text[i := skip(i)] != "}":  # entry by entry: the others are freed as they go
            key, i = decode(text, i)
            value, i = decode(text, skip(i))
            if key.split(".", 1)[0] in keep:
                self.kept[key] = value

    def get(self, key: str, default: Any = None) -> Any:
        if key in self.kept:
            return self.kept[key]
        if self.full is None:
            import json

            with open(self.path) as f:
                self.full = json.load(f)
        return self.full.get(key, default)


def lean_validators() -> bool:
    """Give plotly a :class:`LeanValidators` table if it has not read its own yet; True if it has it now."""
    from plotly import validator_cache

    cache = getattr(validator_cache, "ValidatorCache", None)  # plotly >= 6; another layout: its own table
    if cache is not None and getattr(cache, "_json_cache", False) is None:
        cache._json_cache = LeanValidators(Path(validator_cache.__file__).parent / "validators" / "_validators.json")
    return isinstance(getattr(cache, "_json_cache", None), LeanValidators)


def warm() -> None:
    """Load plotly's figure validators and widget classes (a chart with a scatter trace and subplots, then
    closed): what the first chart of a page otherwise pays for (~0.25 s of CPU). Under ``workbench up``
    the validators come from a :func:`lean_validators` table."""
    import plotly.graph_objects as go

    if os.environ.get(BUNDLE_ENV):
        lean_validators()
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
    lean_validators()
    return _shared_class()(light_figure(figure))
