"""The wizard's issue-15 fields (base currency, direction, margin, latency, depth): read into the config,
prefilled from it, and the config's own validation errors shown beside the field they name."""
from __future__ import annotations

import pytest

from workbench.config import make_config
from workbench.ui.wizard import TRADING, Wizard


def _set(w: Wizard, key: str, *values: object) -> None:
    for widget, value in zip(w.field(key).widgets, values):
        widget.value = value


def test_base_currency_is_asked_for_when_the_quotes_differ_and_shown_beside_its_field() -> None:
    w = Wizard(launch=False)
    _set(w, "symbols", "BTC/USDT, ETH/BTC")
    w.goto(TRADING)
    assert not w.next()  # the Trading step holds the problem
    assert "quoted in BTC and USDT" in w.field("base_currency").message
    _set(w, "base_currency", "usdt")  # typed in lower case: read as the code
    cfg = w.validate()
    assert cfg is not None and cfg.base_currency == "USDT" and w.errors == {}
    again = Wizard(cfg, launch=False)  # prefilled from a config: the same config back
    assert again.field("base_currency").widgets[0].value == "USDT" and again.build()[0] == cfg


def test_latency_and_depth_fields_round_trip_and_show_the_configs_errors() -> None:
    w = Wizard(launch=False)
    assert w.build()[0].latency is None and w.build()[0].depth is None  # off by default
    _set(w, "latency", "ms", 250)
    _set(w, "depth", "book", 2)
    cfg, errors = w.build()
    assert cfg is None and errors["depth"].startswith("levels: ") and "greater than or equal to 5" in errors["depth"]
    _set(w, "depth", "book", 10)
    _set(w, "latency", "bars", 1.5)
    assert "not a whole number of bars" in w.build()[1]["latency"]
    _set(w, "latency", "bars", 2)
    cfg = w.validate()
    assert cfg is not None and (cfg.latency.bars, cfg.latency.ms) == (2, None)
    assert (cfg.depth.model, cfg.depth.levels) == ("book", 10)
    again = Wizard(cfg, launch=False)
    assert again.build()[0] == cfg
    assert [w.value for w in again.field("latency").widgets] == ["bars", 2.0]


def test_margin_and_direction_fields_round_trip_and_show_the_configs_errors() -> None:
    w = Wizard(launch=False)
    assert not w.field("margin.leverage").visible  # shown once margin is switched on
    assert w.build()[0].margin is None
    _set(w, "margin", True)
    assert w.field("margin.leverage").visible
    _set(w, "margin.leverage", 0.5)
    assert "below 1" in w.build()[1]["margin.leverage"]
    _set(w, "margin.leverage", 4)
    _set(w, "margin.maintenance", 30)  # percent: 0.3 is above the initial margin 1/4
    assert "must be below the initial margin" in w.build()[1]["margin"]
    _set(w, "margin.maintenance", 1)
    _set(w, "margin.funding_rate", 0.01)
    _set(w, "direction", "both")
    cfg = w.validate()
    assert cfg is not None, w.errors
    assert (cfg.margin.leverage, cfg.margin.maintenance, cfg.direction) == (4.0, 0.01, "both")
    assert cfg.margin.funding_rate == pytest.approx(0.0001)
    assert Wizard(cfg, launch=False).build()[0] == cfg
    off = Wizard(make_config(), launch=False)
    _set(off, "margin", False)
    assert off.build()[0].margin is None


def test_a_short_leveraged_perpetual_from_the_form() -> None:
    w = Wizard(launch=False)
    _set(w, "symbols", "btc/usdt:usdt")
    _set(w, "direction", "short")
    _set(w, "margin", True)
    _set(w, "margin.leverage", 5)
    cfg = w.validate()
    assert cfg is not None, w.errors
    assert (cfg.symbols, cfg.direction, cfg.margin.leverage, cfg.currency) == (["BTC/USDT:USDT"], "short", 5.0, "USDT")
