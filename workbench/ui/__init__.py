"""ipywidgets + Plotly views; they take a store and/or sessions and hold no business logic.

``wizard()``, ``sessions()``, ``detail(id)``, ``controls(id)``, ``risk()``, ``history()`` build the
views (each displays itself in Jupyter); ``header()`` is the console header the pages open with (equity,
day P&L, exposure, sessions by state, alerts), to show above a view in a notebook;
:mod:`workbench.ui.pages` assembles the Voilà pages.
The functions are imported here eagerly: they share names with their modules, and an eager
import keeps ``workbench.ui.history`` the function, not the module.
"""
import sys

# Plotly's FigureWidget imports nbformat, whose jsonschema then builds rfc3987_syntax's IRI grammar
# (3 s at import, 9 s on a busy host): a view never validates an IRI, so jsonschema goes without.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

from workbench.ui.console import ConsoleHeader, header  # noqa: E402
from workbench.ui.controls import ControlPanel, controls  # noqa: E402
from workbench.ui.detail import DetailView, detail  # noqa: E402
from workbench.ui.history import HistoryView, history  # noqa: E402
from workbench.ui.risk import RiskView, risk  # noqa: E402
from workbench.ui.sessions import SessionsView, sessions  # noqa: E402
from workbench.ui.wizard import Wizard, wizard  # noqa: E402

__all__ = ["ConsoleHeader", "ControlPanel", "DetailView", "HistoryView", "RiskView", "SessionsView", "Wizard",
           "controls", "detail", "header", "history", "risk", "sessions", "wizard"]
