"""The wizard's legs editor: add and remove legs, each field's own config error beside it, a legs session made."""
from __future__ import annotations

import pytest

pytest.importorskip("ipywidgets")

from workbench.config import make_config  # noqa: E402
from workbench.ui.wizard import STRATEGY, Wizard  # noqa: E402


def leg(wiz: Wizard, i: int, **values) -> None:
    for name, value in values.items():
        wiz.legs.rows[i][name].widgets[0].value = value


def test_legs_are_added_checked_by_the_config_and_removed():
    wiz = Wizard()
    wiz.goto(STRATEGY)
    wiz.legs.add_button.click()
    wiz.legs.add_button.click()
    assert [r["name"].read() for r in wiz.legs.rows] == ["leg1", "leg2"]
    leg(wiz, 1, name="leg1", strategy="sma_cross", params="fast=5, slow=3", symbols="ETH/USDT", allocation=0.6)
    leg(wiz, 0, params="window=0")
    assert not wiz.next()  # the strategy step has errors: it stays
    assert wiz.field("legs.0.params").message == "param 'window' must be between 1 and 10000 (got 0)"
    assert "fast" in wiz.field("legs.1.params").message and wiz.field("params.window").message == ""
    assert "leg 1 params" in wiz.summary.value
    leg(wiz, 0, params="window=20")
    leg(wiz, 1, params="fast=5, slow=30")
    wiz.validate()
    assert wiz.field("legs").message == "leg names must be unique; repeated: leg1"
    leg(wiz, 1, name="trend", params="fast5")
    wiz.validate()
    assert "params takes key=value" in wiz.field("legs.1.params").message
    leg(wiz, 1, params="fast=5, slow=30", allocation=0.8)
    wiz.validate()
    assert wiz.field("legs").message.startswith("leg allocations sum to 1.3 > 1")
    wiz.legs.add_button.click()  # a third, then removed again: the rows after it move up
    wiz.legs.rows[0]["name"].widgets[0].value = "first"
    wiz.legs.widget.children[1].children[0].children[-1].click()  # the first row's Remove
    assert [r["name"].read() for r in wiz.legs.rows] == ["trend", "leg2"]
    assert wiz.field("legs.0.name").read() == "trend" and "legs.2.name" not in wiz.others
    wiz.legs.remove(1)
    leg(wiz, 0, allocation=0.5)
    assert wiz.next(), wiz.errors
    cfg = wiz.create()
    assert cfg is not None and [lg.name for lg in cfg.legs] == ["trend"]
    assert cfg.strategy == "sma_cross" and cfg.params == {"fast": 5, "slow": 30} and cfg.symbols == ["ETH/USDT"]


def test_a_legs_config_fills_the_editor_and_the_review_lists_its_legs():
    config = make_config(legs=[{"name": "a", "strategy": "momentum", "symbols": ["BTC/USDT"], "allocation": 0.6},
                               {"name": "b", "strategy": "sma_cross", "params": {"fast": 4, "slow": 12},
                                "symbols": ["ETH/USDT"], "allocation": 0.4}])
    wiz = Wizard(config)
    assert [r["name"].read() for r in wiz.legs.rows] == ["a", "b"]
    assert wiz.field("legs.1.params").read() == {"fast": 4, "slow": 12}
    assert wiz.build() == (config, {})
    wiz.goto(wiz.step + 5)
    assert "leg b" in wiz.review.value
    assert "sma_cross (fast=4, slow=12) on ETH/USDT, 40% of the capital" in wiz.review.value
    assert Wizard().build()[0].legs == []  # no legs unless added
