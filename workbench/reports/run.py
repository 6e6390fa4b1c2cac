"""Run the report template with papermill and export it as self-contained HTML: one report, or a batch.

The one template is ``workbench/reports/backtest_report.ipynb`` (package data, found from an installed or
editable package alike; open it in Jupyter to browse or run it by hand). Reports run in a fresh kernel of
the ``python3`` kernelspec, which jupyter_client starts with the interpreter running this code.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from workbench.reports.display import SUMMARY_MIME
from workbench.reports.provenance import scrub
from workbench.reports.report import OVERRIDES

TEMPLATE = Path(__file__).with_name("backtest_report.ipynb")
PARAMETERS: tuple[str, ...] = (*OVERRIDES, "session_id", "template", "db_url")
_HTML_TEMPLATE = "workbench_report.html.j2"
# the lab template minus require.js, MathJax and mermaid from a CDN: the page needs no network
_HTML_TEMPLATE_SRC = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


class ReportError(ValueError):
    """A report could not be made; the message is one line. ``output`` holds whatever was written."""

    def __init__(self, message: str, output: ReportOutput | None = None):
        super().__init__(message)
        self.output = output


@dataclass(frozen=True)
class ReportOutput:
    """Where a report was written, and its key metrics (``summary``; None if the run failed early)."""

    notebook_path: Path
    html_path: Path | None
    summary: dict[str, Any] | None = field(default=None, compare=False)


def template_path() -> Path:
    """The papermill template shipped with the package."""
    if not TEMPLATE.is_file():
        raise ReportError(f"report template missing at {TEMPLATE}; reinstall workbench")
    return TEMPLATE


def _plain(value: Any) -> Any:
    """Parameters as the literals papermill writes: dates as ISO strings, tuples as lists."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def notebook_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """Checked papermill parameters; with ``session_id``/``template``, unset overrides are None so the
    saved config is kept."""
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise ReportError(f"unknown report parameter(s) {', '.join(map(repr, unknown))}; "
                          f"known: {', '.join(PARAMETERS)}")
    out = {k: _plain(v) for k, v in params.items()}
    if out.get("session_id") is not None or out.get("template") is not None:
        out = {**dict.fromkeys(OVERRIDES), **out}
    return out


def slug(text: str, limit: int = 80) -> str:
    """A file-name-safe version of ``text``."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.")
    return s[:limit] or "report"


def default_name(params: dict[str, Any]) -> str:
    """``report-<strategy or session/template>-<timestamp>``."""
    what = params.get("session_id") or params.get("template") or params.get("strategy") or "momentum"
    return slug(f"report-{what}-{datetime.now():%Y%m%d-%H%M%S}")


def _scrub_file(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    clean = scrub(text)
    if clean != text:
        path.write_text(clean, encoding="utf-8")


def export_html(notebook_path: Path, html_path: Path) -> Path:
    """The notebook as one HTML page: outputs only (no code, no prompts), plotly.js inline, no CDN."""
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    nb = nbformat.read(notebook_path, as_version=4)
    exporter = HTMLExporter(
        template_name="lab", exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
        extra_loaders=[DictLoader({_HTML_TEMPLATE: _HTML_TEMPLATE_SRC})],
    )
    exporter.template_file = _HTML_TEMPLATE
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": html_path.stem}})
    html_path.write_text(scrub(body), encoding="utf-8")
    return html_path


def read_summary(notebook_path: Path) -> dict[str, Any] | None:
    """The run summary a report notebook displayed (``Report.run()``), if it got that far."""
    nb = json.loads(notebook_path.read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if SUMMARY_MIME in data:
                return data[SUMMARY_MIME]
    return None


def _failure(exc: Exception) -> str:
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        evalue = (exc.evalue or "").strip().splitlines()
        first = evalue[0] if evalue else ""
        if exc.ename in ("ReportParameterError", "ConfigError", "BarsError"):
            return f"report failed: {first}"
        return f"report failed: {exc.ename}: {first}" if first else f"report failed: {exc.ename}"
    msg = str(exc).strip().splitlines()
    return f"report failed: {type(exc).__name__}" + (f": {msg[0]}" if msg else "")


def run_report(
    params: dict[str, Any],
    out_dir: str | Path,
    *,
    name: str | None = None,
    html: bool = True,
    timeout: float = 600,
    kernel_name: str = "python3",
) -> ReportOutput:
    """Execute the report template with ``params`` (the notebook's parameters, see ``PARAMETERS``) into
    ``out_dir/<name>.ipynb`` and, with ``html``, ``out_dir/<name>.html``. ``timeout`` is per cell, in
    seconds. Raises :class:`ReportError` with a one-line cause if the notebook fails; the failed
    notebook (and its HTML) are still written, see ``ReportError.output``."""
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    parameters = notebook_parameters(params)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = slug(name) if name else default_name(parameters)
    nb_path, html_path = out / f"{name}.ipynb", out / f"{name}.html"
    error: str | None = None
    try:
        pm.execute_notebook(
            str(template_path()), str(nb_path), parameters=parameters, kernel_name=kernel_name,
            execution_timeout=timeout, progress_bar=False, log_output=False,
        )
    except (pm.PapermillExecutionError, CellTimeoutError, DeadKernelError, RuntimeError) as e:
        error = _failure(e)
    if not nb_path.is_file():
        raise ReportError(error or f"report failed: no notebook written to {nb_path}")
    _scrub_file(nb_path)
    output = ReportOutput(nb_path, export_html(nb_path, html_path) if html else None, read_summary(nb_path))
    if error:
        raise ReportError(error, output)
    return output
