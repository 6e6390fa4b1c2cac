"""The wizard's market-realism fields (issue 15): base currency, direction and margin on the Trading step,
latency and order-book depth on the Execution step. The config's own validation names what is wrong,
shown beside the field (``margin.leverage`` beside Leverage, a whole-margin problem beside the margin switch).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as W

from workbench.config import Margin
from workbench.ui import forms as F
from workbench.ui.forms import FormField, ParseError

if TYPE_CHECKING:
    from workbench.ui.wizard_fields import WizardFields

DIRECTIONS = (("Long only", "long"), ("Short only", "short"), ("Long and short", "both"))
LATENCY_UNITS = (("No latency", ""), ("Milliseconds", "ms"), ("Bars", "bars"))
DEPTH_MODELS = (("Slippage model", ""), ("Volume impact", "volume"), ("Order book", "book"))
#: margin settings: (key, label, percent, unit, help)
MARGIN = (("leverage", "Leverage", False, "×", "buying power as a multiple of equity"),
          ("maintenance", "Maintenance margin", True, "%", "below it a position is liquidated"),
          ("borrow_rate", "Borrow interest", True, "% a year", "paid by margin shorts"),
          ("funding_rate", "Funding rate", True, "% per 8 h", "perpetuals: longs pay a positive rate"))


def trading_rows(form: WizardFields, step: int) -> list[FormField]:
    """Base currency, direction and margin."""
    cur = F.text("Base currency", placeholder="the symbols' quote")

    def write_cur(v: Any) -> None:
        cur.value = v or ""
    currency = form._add(FormField(
        "base_currency", "Base currency", step, [cur], lambda: cur.value.strip().upper() or None, write_cur,
        help="cash and P&L; needed when the symbols' quotes differ (BTC/USDT with ETH/BTC)",
        show=lambda v: v or "the symbols' quote"))
    direction = form._value_field("direction", "Direction", step, F.dropdown("Direction", DIRECTIONS),
                                  help="short: the strategy's exit signals open shorts")
    return [currency, direction, *_margin_rows(form, step)]


def _margin_rows(form: WizardFields, step: int) -> list[FormField]:
    """One number per margin setting, then the switch (read last: None when off, else their values)."""
    subs: list[FormField] = []
    for key, label, percent, unit, help in MARGIN:
        w = F.number(label)

        def write(v: Any, w: W.FloatText = w, key: str = key, percent: bool = percent) -> None:
            v = Margin.model_fields[key].default if v is None else v
            w.value = F.frac_to_pct(v) if percent else v

        def read(w: W.FloatText = w, percent: bool = percent) -> float:
            return F.pct_to_frac(w.value) if percent else float(w.value)
        subs.append(form._add(FormField(f"margin.{key}", label, step, [w], read, write, unit=unit, help=help,
                                        translate=F.percentify if percent else (lambda m: m),
                                        show=(lambda v: f"{F.fmt_pct(v)} %") if percent else F.fmt_number)))
    box = W.Checkbox(description="trade on margin (leverage, liquidation, interest, funding)", indent=True,
                     style=F.LABEL_STYLE)

    def read_switch() -> dict[str, Any] | None:
        if not box.value:
            return None
        try:
            return {f.key.split(".", 1)[1]: f.read() for f in subs}
        except ParseError:  # the setting's own field shows it
            return {}

    def write_switch(v: Any) -> None:
        box.value = v is not None
    switch = form._add(FormField("margin", "Margin", step, [box], read_switch, write_switch,
                                 show=lambda v: "on" if v else "off (cash only)"))

    def visible(on: bool) -> None:
        for f in subs:
            f.set_visible(on)
    box.observe(lambda ch: visible(ch["new"]), names="value")
    visible(False)
    return [switch, *subs]


def execution_rows(form: WizardFields, step: int) -> list[FormField]:
    """Order latency and the fill model (order-book depth)."""
    unit = F.dropdown("Order latency", LATENCY_UNITS)
    amount = W.FloatText(value=0.0, layout={"width": "90px"})

    def read_latency() -> dict[str, Any] | None:
        if not unit.value:
            return None
        return {"ms": float(amount.value)} if unit.value == "ms" else {"bars": _whole(amount.value, "bars")}

    def write_latency(v: Any) -> None:
        unit.value = "" if not v else ("ms" if v.get("ms") is not None else "bars")
        amount.value = 0.0 if not v else float(v.get("ms") if v.get("ms") is not None else v.get("bars") or 0)
    latency = form._add(FormField("latency", "Order latency", step, [unit, amount], read_latency, write_latency,
                                  help="from a decision to the market (fill delay)", show=_show_latency))
    model = F.dropdown("Fill model", DEPTH_MODELS)
    levels = W.IntText(value=20, layout={"width": "90px"}, tooltip="book levels per side (paper on live data)")

    def read_depth() -> dict[str, Any] | None:
        return {"model": model.value, "levels": int(levels.value)} if model.value else None

    def write_depth(v: Any) -> None:
        model.value, levels.value = (v["model"], int(v.get("levels", 20))) if v else ("", 20)
    depth = form._add(FormField("depth", "Fill model", step, [model, levels], read_depth, write_depth,
                                help="order book: walk recorded/live L2 books (levels per side)", show=_show_depth))
    return [latency, depth]


def _whole(value: float, what: str) -> int:
    if value != int(value):
        raise ParseError(f"{value:g} is not a whole number of {what}")
    return int(value)


def _show_latency(v: Any) -> str:
    if not v:
        return "none"
    return f"{F.fmt_number(v['ms'])} ms" if v.get("ms") is not None else f"{v.get('bars')} bar(s)"


def _show_depth(v: Any) -> str:
    if not v:
        return "slippage model"
    return "order book" + (f", {v.get('levels')} levels" if v.get("levels") else "") if v["model"] == "book" \
        else "volume impact"
