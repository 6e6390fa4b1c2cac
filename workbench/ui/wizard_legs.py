"""The wizard's legs editor: add and remove the legs of a multi-strategy session (config ``legs``).

Each leg is a row of name, strategy, params (``fast=5, slow=20``; empty: the strategy's defaults), symbols
(``BTC/USDT, ETH/USDT``) and allocation (a fraction of the capital). Its fields are :class:`FormField` s
keyed ``legs.N.<field>`` in the wizard's ``others``, so the config's own validation errors (``legs.1.allocation:
...``, ``legs.0.params: ...``) show beside the field they name, and list-wide ones (names repeated,
allocations over 1) beside the ``legs`` holder. With legs, the session's strategy and params are the first
leg's (the strategy step's own are not used) and its symbols the union of the legs'.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ipywidgets as W

from workbench.ui import forms as F
from workbench.ui.forms import FormField, ParseError

__all__ = ["LegsEditor"]

LEG_FIELDS = ("name", "strategy", "params", "symbols", "allocation")


def _params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def _read_params(text: str) -> dict[str, Any]:
    from workbench.reports.flags import parse_params

    try:
        return parse_params([p for p in (s.strip() for s in text.split(",")) if p], flag="params",
                            example="fast=5, slow=20")
    except ValueError as e:
        raise ParseError(f"{e}; leave it empty for the strategy's defaults") from None


def _read_symbols(text: str) -> list[str]:
    symbols = [s.strip() for s in text.split(",") if s.strip()]
    if not symbols:
        raise ParseError("give at least one symbol, e.g. BTC/USDT, ETH/USDT")
    return symbols


def _rekey(f: FormField, key: str) -> None:
    """Give ``f`` the key ``key`` (a row moved up), its CSS classes with it."""
    if f.key == key:
        return
    old, new = F.css_name(f.key), F.css_name(key)
    for w, kind in [*((w, "field") for w in f.widgets), (f.error, "error"), (f.row, "row")]:
        w.remove_class(f"wb-{kind}-{old}")
        w.add_class(f"wb-{kind}-{new}")
    f.key = key


class LegsEditor:
    """The legs of the wizard's config as editable rows (see the module docstring). ``others`` is the
    wizard's dict of non-config fields, where the legs' fields are registered for its error routing."""

    def __init__(self, catalog: Mapping[str, Mapping[str, Any]], others: dict[str, FormField], step: int):
        self.catalog, self.others, self.step = catalog, others, step
        self.rows: list[dict[str, FormField]] = []
        self.holder = FormField("legs", "Legs", step, [], lambda: None, lambda v: None)
        others["legs"] = self.holder
        self.add_button = W.Button(description="Add leg", icon="plus")
        self.add_button.add_class("wb-legs-add")
        self.add_button.on_click(lambda _: self.add())
        self._rows_box = W.VBox()
        self.widget = W.VBox([W.HTML("<b>Legs</b> <span style='color:#777'>(several strategies in one session, "
                                     "sharing its cash and risk limits; none: the strategy above)</span>"),
                              self._rows_box, W.HBox([self.add_button]), self.holder.row])
        self.widget.add_class("wb-wizard-legs")

    # ---- rows -------------------------------------------------------------------------------
    def load(self, legs: list[Mapping[str, Any]]) -> None:
        """Show ``legs`` (config dicts) as the rows, replacing any."""
        self.rows = []
        for leg in legs:
            self._append(leg)
        self._render()

    def add(self, leg: Mapping[str, Any] | None = None) -> None:
        """Add a row: ``leg`` or a new one (the next free name, momentum, BTC/USDT, half the capital or
        what is left of it)."""
        if leg is None:
            names = {r["name"].read() for r in self.rows}
            left = 1.0 - sum(float(r["allocation"].widgets[0].value or 0) for r in self.rows)
            leg = {"name": next(f"leg{i}" for i in range(1, len(names) + 2) if f"leg{i}" not in names),
                   "strategy": "momentum", "params": {}, "symbols": ["BTC/USDT"],
                   "allocation": round(min(left, 0.5), 4) if left > 0 else 0.5}
        self._append(leg)
        self._render()

    def remove(self, index: int) -> None:
        """Remove row ``index``."""
        del self.rows[index]
        self._render()

    def _append(self, leg: Mapping[str, Any]) -> None:
        n = len(self.rows)
        name = W.Text(layout={"width": "110px"}, placeholder="name")
        strategy = W.Dropdown(options=[(str(c.get("title") or k), k) for k, c in self.catalog.items()],
                              layout={"width": "160px"})
        params = W.Text(layout={"width": "200px"}, placeholder="fast=5, slow=20")
        symbols = W.Text(layout={"width": "180px"}, placeholder="BTC/USDT, ETH/USDT")
        allocation = W.BoundedFloatText(min=0.0, max=1.0, step=0.05, layout={"width": "90px"})

        def text(w: W.Text, read: Any = str.strip) -> tuple[Any, Any]:
            return (lambda: read(w.value)), (lambda v: setattr(w, "value", v))

        row = {
            "name": FormField(f"legs.{n}.name", "name", self.step, [name], *text(name)),
            "strategy": FormField(f"legs.{n}.strategy", "strategy", self.step, [strategy],
                                  lambda: strategy.value, lambda v: setattr(strategy, "value", v)),
            "params": FormField(f"legs.{n}.params", "params", self.step, [params], lambda: _read_params(params.value),
                                lambda v: setattr(params, "value", _params_text(v or {}))),
            "symbols": FormField(f"legs.{n}.symbols", "symbols", self.step, [symbols],
                                 lambda: _read_symbols(symbols.value),
                                 lambda v: setattr(symbols, "value", ", ".join(v or []))),
            "allocation": FormField(f"legs.{n}.allocation", "allocation", self.step, [allocation],
                                    lambda: float(allocation.value), lambda v: setattr(allocation, "value", v)),
        }
        for key in LEG_FIELDS:
            if key in leg:
                row[key].write(leg[key])
        self.rows.append(row)

    def _render(self) -> None:
        """Re-key the rows' fields ``legs.N.*`` by position, register them in ``others`` and lay them out."""
        for key in [k for k in self.others if k.startswith("legs.")]:
            del self.others[key]
        boxes = []
        for i, row in enumerate(self.rows):
            for name, f in row.items():
                _rekey(f, f"legs.{i}.{name}")
                f.label = f"leg {i + 1} {name}"
                f.set_error(None)
                self.others[f.key] = f
            remove = W.Button(description="Remove", icon="trash", layout={"width": "100px"})
            remove.add_class("wb-legs-remove")
            remove.on_click(lambda _, i=i: self.remove(i))
            cells = [W.VBox([W.HTML(f"<span style='color:#555'>{name}</span>"), f.row]) for name, f in row.items()]
            boxes.append(W.HBox([*cells, remove], layout={"align_items": "flex-end"}))
        self._rows_box.children = boxes

    # ---- reading ------------------------------------------------------------------------------
    def fill(self, data: dict[str, Any], problems: dict[str, list[str]]) -> None:
        """Put the rows into the form's config ``data`` as ``legs`` (a field that cannot be read goes to
        ``problems`` under its key). With legs, the strategy step's strategy and params are left out: the
        config takes the first leg's."""
        legs = []
        for row in self.rows:
            leg: dict[str, Any] = {}
            for name, f in row.items():
                try:
                    leg[name] = f.read()
                except ParseError as e:
                    problems.setdefault(f.key, []).append(str(e))
            legs.append(leg)
        data["legs"] = legs
        if legs:
            data.pop("strategy", None)
            data.pop("params", None)

    def summary(self) -> list[tuple[str, str]]:
        """(leg name, "strategy params on symbols, allocation") per row, for the review."""
        out = []
        for row in self.rows:
            try:
                params = _params_text(row["params"].read())
                symbols = ", ".join(row["symbols"].read())
            except ParseError:
                params, symbols = "?", "?"
            out.append((str(row["name"].read()), f"{row['strategy'].read()} ({params or 'defaults'}) on {symbols}, "
                                                  f"{float(row['allocation'].read()):.0%} of the capital"))
        return out
