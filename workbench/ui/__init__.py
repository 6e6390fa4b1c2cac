"""ipywidgets + Plotly views; they take a store and/or sessions and hold no business logic.

``wizard()``, ``sessions()``, ``detail(id)``, ``controls(id)``, ``risk()``, ``history()`` build the
views (each displays itself in Jupyter); ``header()`` is the console header the pages open with (equity,
day P&L, exposure, sessions by state, alerts), to show above a view in a notebook;
:mod:`workbench.ui.pages` assembles the Voilà pages.
The functions are imported here eagerly: they share names with their modules, and an eager
import keeps ``workbench.ui.history`` the function, not the module.
"""
from workbench.ui.console import ConsoleHeader, header
from workbench.ui.controls import ControlPanel, controls
from workbench.ui.detail import DetailView, detail
from workbench.ui.history import HistoryView, history
from workbench.ui.risk import RiskView, risk
from workbench.ui.sessions import SessionsView, sessions
from workbench.ui.wizard import Wizard, wizard

__all__ = ["ConsoleHeader", "ControlPanel", "DetailView", "HistoryView", "RiskView", "SessionsView", "Wizard",
           "controls", "detail", "header", "history", "risk", "sessions", "wizard"]
