"""ipywidgets + Plotly views; they take a store and/or sessions and hold no business logic."""
from workbench.ui.wizard import Wizard, wizard

__all__ = ["Wizard", "wizard"]
