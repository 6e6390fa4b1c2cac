"""Session creation wizard, driven programmatically: set widget values, click buttons, read messages."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

pytest.importorskip("ipywidgets")

from workbench.config import SessionConfig, make_config  # noqa: E402
from workbench.domain import SessionKind  # noqa: E402
from workbench.ui import forms as F  # noqa: E402
from workbench.ui.wizard import REVIEW, RISK, TRADING, TYPE, Wizard, wizard  # noqa: E402


def w_(wiz: Wizard, key: str):
    """The (first) input widget of a field."""
    return wiz.field(key).widgets[0]


def to_review(wiz: Wizard) -> None:
    while wiz.step < REVIEW:
        assert wiz.next(), wiz.errors


def test_default_flow_produces_a_valid_config():
    wiz = Wizard()
    got = []
    wiz.on_create(lambda cfg, opts: got.append((cfg, opts)))
    for _ in range(REVIEW):
        wiz.next_button.click()
    assert wiz.step == REVIEW and wiz.errors == {}
    assert "Momentum" in wiz.review.value and "Initial balance" in wiz.review.value
    wiz.create_button.click()
    assert wiz.config == make_config()
    assert got == [(wiz.config, {"arming": {"allow_live": False, "confirmation": ""}, "run_in": "kernel"})]
    assert "created" in wiz.status.value
    assert wiz.create_button.disabled  # no double create
    wiz.back_button.click()
    wiz.next_button.click()
    assert not wiz.create_button.disabled


def test_back_and_step_indicator():
    wiz = Wizard()
    assert wiz.back_button.disabled
    wiz.next_button.click()
    assert wiz.step == 1 and wiz.stack.selected_index == 1 and "<b" in wiz.indicator.value
    wiz.back_button.click()
    assert wiz.step == TYPE and wiz.stack.selected_index == 0


def test_changing_strategy_regenerates_params():
    wiz = Wizard()
    assert set(wiz.params) == {"window", "entry_threshold", "exit_threshold", "trend_window"}
    w_(wiz, "strategy").value = "sma_cross"
    assert set(wiz.params) == {"fast", "slow"}
    assert "moving average" in wiz._description.value
    fast = w_(wiz, "params.fast")
    assert (fast.value, fast.min, fast.max) == (10, 2, 1000)
    assert fast.tooltip == "fast SMA window, bars"
    assert fast in [c for row in wiz._params_box.children for c in getattr(row, "children", [])]
    fast.value, w_(wiz, "params.slow").value = 5, 20
    cfg, errors = wiz.build()
    assert errors == {} and cfg.strategy == "sma_cross" and cfg.params == {"fast": 5, "slow": 20}


def test_param_combination_error_sits_beside_the_param():
    wiz = Wizard()
    w_(wiz, "strategy").value = "sma_cross"
    w_(wiz, "params.fast").value, w_(wiz, "params.slow").value = 50, 20
    wiz.goto(1)
    assert not wiz.next()
    assert wiz.step == 1
    assert "smaller than 'slow'" in wiz.field("params.fast").message


def test_negative_balance_shows_message_beside_it_and_blocks_next():
    wiz = Wizard()
    wiz.goto(TRADING)
    w_(wiz, "initial_balance").value = -100
    wiz.next_button.click()
    assert wiz.step == TRADING
    msg = wiz.field("initial_balance").message
    assert "greater than 0" in msg
    assert "greater than 0" in wiz.field("initial_balance").error.value
    assert "Initial balance" in wiz.summary.value
    assert wiz.field("symbols").message == ""
    w_(wiz, "initial_balance").value = 5000
    wiz.next_button.click()
    assert wiz.step == RISK and wiz.field("initial_balance").message == "" and wiz.summary.value == ""


def test_stop_loss_150_percent_error_beside_stop_loss():
    wiz = Wizard()
    wiz.goto(RISK)
    w_(wiz, "risk.stop_loss").value = "150"
    assert not wiz.next()
    assert wiz.step == RISK
    assert wiz.field("risk.stop_loss").message == "Input should be less than 100 %"
    w_(wiz, "risk.stop_loss").value = "5"
    assert wiz.next()
    cfg, _ = wiz.build()
    assert cfg.risk.stop_loss == 0.05


def test_percent_and_off_conversion():
    wiz = Wizard()
    w_(wiz, "risk.take_profit").value = "12.5"
    w_(wiz, "risk.trailing_stop").value = "0"
    w_(wiz, "risk.max_position").value = ""
    w_(wiz, "risk.circuit_breaker.max_daily_loss").value = "3"
    w_(wiz, "commission.taker").value = 0.075
    w_(wiz, "volume.max_share").value = 10
    cfg, errors = wiz.build()
    assert errors == {}
    assert cfg.risk.take_profit == 0.125 and cfg.risk.trailing_stop is None and cfg.risk.max_position is None
    assert cfg.risk.circuit_breaker.max_daily_loss == 0.03
    assert cfg.commission.taker == 0.00075 and cfg.volume.max_share == 0.1


def test_unparseable_numbers_get_a_message_not_an_exception():
    wiz = Wizard()
    w_(wiz, "risk.max_position").value = "abc"
    w_(wiz, "risk.max_orders_per_minute").value = "2.5"
    assert wiz.validate() is None
    assert "not a number" in wiz.field("risk.max_position").message
    assert "whole number" in wiz.field("risk.max_orders_per_minute").message


def test_bad_blackout_text_shows_a_message():
    wiz = Wizard()
    blk = w_(wiz, "time.blackouts")
    for bad, expect in [("12:00 to 12:30", "HH:MM-HH:MM"), ("12:00-ab:cd", "not a time"),
                        ("12:00-12:00", "window 1: window start and end are equal"),
                        ("10:00-11:00, 25:00-26:00", "window 2 start: use HH:MM")]:
        blk.value = bad
        assert wiz.validate() is None, bad
        assert expect in wiz.field("time.blackouts").message, (bad, wiz.errors)
    blk.value = "12:00-12:30, 20:00-21:00"
    cfg = wiz.validate()
    assert [(b.start, b.end) for b in cfg.time.blackouts] == [("12:00", "12:30"), ("20:00", "21:00")]


def test_trading_hours_need_both_ends():
    wiz = Wizard()
    start, end = wiz.field("time.trading_hours").widgets
    start.value = "09:30"
    assert wiz.validate() is None and "both start and end" in wiz.field("time.trading_hours").message
    end.value = "16:00"
    assert wiz.validate().time.trading_hours.end == "16:00"


def test_bad_symbols_and_date_order():
    wiz = Wizard()
    w_(wiz, "symbols").value = "btc/usdt, ETHUSDT"
    assert wiz.validate() is None
    assert "ETHUSDT" in wiz.field("symbols").message
    w_(wiz, "symbols").value = "btc/usdt eth/usdt"
    w_(wiz, "start").value = date(2024, 2, 1)
    w_(wiz, "end").value = date(2024, 1, 1)
    assert wiz.validate() is None
    assert set(wiz.errors) == {"end"} and "after start" in wiz.field("end").message


def passing_preflight(config):
    from workbench.engine.preflight import Check

    return [Check("key", "pass", "found")]


def test_live_without_arming_refuses():
    wiz = Wizard(preflight=passing_preflight)
    got = []
    wiz.on_create(lambda cfg, opts: got.append(opts))
    w_(wiz, "kind").value = "live"
    assert wiz._arming_panel.layout.display is None
    assert not wiz.next() and wiz.step == TYPE
    assert "not armed" in wiz.field("arming").message
    wiz.goto(REVIEW)
    assert wiz.create() is None and got == [] and wiz.config is None
    assert wiz.step == TYPE
    wiz._allow_live.value = True
    wiz._confirm.value = "kraken:main"  # wrong exchange
    assert wiz.create() is None and "binance:main" in wiz.field("arming").message
    wiz._confirm.value = "binance:main"
    wiz.run_in.value = "host"
    to_review(wiz)
    wiz.create_button.click()
    assert wiz.config.kind is SessionKind.LIVE
    assert got == [{"arming": {"allow_live": True, "confirmation": "binance:main"}, "run_in": "host"}]


def test_kind_toggles_panels():
    wiz = Wizard()
    assert wiz._arming_panel.layout.display == "none" and wiz.field("start").visible
    w_(wiz, "kind").value = "paper"
    assert not wiz.field("start").visible and wiz._arming_panel.layout.display == "none"
    w_(wiz, "start").value = date(2024, 1, 1)  # hidden: ignored for paper
    to_review(wiz)
    assert wiz.run_in.layout.display is None
    assert wiz.create().start is None


FULL = dict(
    kind="paper", name="tmpl", strategy="sma_cross", params={"fast": 5, "slow": 20},
    symbols=["BTC/USDT", "ETH/USDT"], initial_balance=2500,
    sizing={"mode": "fixed_amount", "value": 500},
    commission={"taker": 0.00075, "maker": 0.0002, "fixed": 0.1},
    slippage={"model": "volume", "bps": 2, "impact": 0.5},
    volume={"min_bar_volume": 1, "max_share": 0.07, "on_excess": "skip"},
    time={"timezone": "America/New_York", "trading_hours": {"start": "09:30", "end": "16:00"},
          "blackouts": [{"start": "12:00", "end": "12:30"}, {"start": "23:00", "end": "01:00"}],
          "weekdays": [0, 1, 2, 3, 4]},
    risk={"max_position": 1000, "portfolio_limit": 3000, "concentration_limit": 0.33, "stop_loss": 0.07,
          "take_profit": 0.1, "trailing_stop": 0.03, "max_holding_minutes": 240, "max_orders_per_minute": 6,
          "circuit_breaker": {"max_daily_loss": 0.05, "max_drawdown": 0.2, "max_rejections": 3,
                              "action": "reducing"}},
    data={"source": "ccxt", "exchange": "kraken", "timeframe": "5m"},
)


@pytest.mark.parametrize("cfg", [
    make_config(),
    make_config(**FULL),
    make_config(**{**FULL, "kind": "backtest", "strategy": "pump_detection", "params": {"min_return": 0.015},
                   "sizing": {"mode": "percent_equity", "value": 0.07},
                   "data": {"source": "csv", "csv_path": "/tmp/bars.csv"},
                   "start": "2024-01-02", "end": "2024-01-20T12:00:00Z"}),
])
def test_load_config_round_trip(cfg: SessionConfig):
    wiz = Wizard()
    wiz.load_config(cfg)
    built, errors = wiz.build()
    assert errors == {}
    assert built == cfg


def test_load_config_prefills_widgets_in_ui_units():
    wiz = Wizard(make_config(**FULL))
    assert w_(wiz, "risk.stop_loss").value == "7"
    assert w_(wiz, "volume.max_share").value == 7.0
    assert w_(wiz, "commission.taker").value == 0.075
    assert w_(wiz, "symbols").value == "BTC/USDT, ETH/USDT"
    assert w_(wiz, "time.blackouts").value == "12:00-12:30, 23:00-01:00"
    assert w_(wiz, "params.fast").value == 5
    assert wiz.field("sizing.value").unit == "quote currency per entry"
    assert wiz.field("slippage.impact").visible and wiz.field("data.csv_path").visible is False


def test_dates_are_utc_datetimes():
    wiz = Wizard()
    w_(wiz, "start").value = date(2024, 3, 1)
    w_(wiz, "end").value = date(2024, 3, 8)
    cfg = wiz.validate()
    assert cfg.start == datetime(2024, 3, 1, tzinfo=timezone.utc)
    assert cfg.end == datetime(2024, 3, 8, tzinfo=timezone.utc)


def test_callbacks_get_the_config_and_failures_are_shown():
    wiz = Wizard()
    seen = []

    @wiz.on_create
    def first(cfg, opts):
        seen.append(cfg)

    def boom(cfg, opts):
        raise RuntimeError("host unreachable")

    wiz.on_create(boom)
    w_(wiz, "initial_balance").value = 1234
    to_review(wiz)
    wiz.create_button.click()
    assert seen == [wiz.config] and seen[0].initial_balance == 1234
    assert "host unreachable" in wiz.status.value


def test_create_with_errors_jumps_to_the_first_bad_step():
    wiz = Wizard()
    w_(wiz, "risk.stop_loss").value = "abc"
    w_(wiz, "initial_balance").value = 0
    wiz.goto(REVIEW)
    assert "Fix the problems" in wiz.review.value
    wiz.create_button.click()
    assert wiz.config is None and wiz.step == TRADING
    assert set(wiz.errors) == {"initial_balance", "risk.stop_loss"}


def test_repr_mimebundle_delegates():
    wiz = wizard(make_config(initial_balance=777))
    assert wiz.field("initial_balance").widgets[0].value == 777
    bundle = wiz._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_forms_helpers():
    assert F.parse_number("") is None and F.parse_number("0") is None
    assert F.parse_number("5", percent=True) == 0.05 and F.parse_number("1,000") == 1000.0
    for x in (0.07, 0.001, 0.33, 0.123456789):
        assert F.pct_to_frac(F.frac_to_pct(x)) == x
    assert F.frac_to_pct(0.07) == 7.0
    assert F.parse_windows(" 9:00 - 10:00 ;20:00-21:00") == [{"start": "09:00", "end": "10:00"},
                                                             {"start": "20:00", "end": "21:00"}]
    assert F.percentify("Input should be less than or equal to 0.5") == "Input should be less than or equal to 50 %"
    assert F.resolve("time.blackouts.0.start", ["time.blackouts", "time"]) == ("time.blackouts", "window 1 start")


# ---- the live step: account, sandbox, arming, pre-flight; paper on live data ---------------------------
def live_form(wiz: Wizard, account: str = "main") -> None:
    """Fill the type step for an armed live session on ``binance:<account>``."""
    w_(wiz, "kind").value = "live"
    w_(wiz, "live.account").value = account
    wiz._allow_live.value, wiz._confirm.value = True, f"binance:{account}"


def test_live_step_has_account_and_sandbox_and_the_confirmation_names_the_account():
    wiz = Wizard(preflight=passing_preflight)
    assert not wiz.field("live.account").visible and not wiz.field("live.sandbox").visible
    assert wiz._preflight_panel.layout.display == "none"
    live_form(wiz, "spare")
    assert wiz.field("live.account").visible and wiz._preflight_panel.layout.display is None
    w_(wiz, "live.sandbox").value = True
    wiz._confirm.value = "binance:main"  # the account is 'spare'
    assert wiz.create() is None and "binance:spare" in wiz.field("arming").message
    wiz._confirm.value = "binance:spare"
    w_(wiz, "live.account").value = "bad account!"
    assert wiz.validate() is None and "live.account" in wiz.errors
    w_(wiz, "live.account").value = "spare"
    cfg = wiz.create()
    assert (cfg.live.account, cfg.live.sandbox) == ("spare", True)
    wiz.goto(REVIEW)
    assert "Sandbox" in wiz.review.value and "testnet" in wiz.review.value


def test_paper_can_trade_on_live_data():
    wiz = Wizard()
    assert not wiz.field("data.live").visible
    w_(wiz, "kind").value = "paper"
    assert wiz.field("data.live").visible
    w_(wiz, "data.live").value = True
    assert wiz.validate() is None and "source='ccxt'" in wiz.field("data.source").message
    w_(wiz, "data.source").value = "ccxt"
    cfg = wiz.create()
    assert cfg.data.live and cfg.data.source == "ccxt"
    w_(wiz, "kind").value = "live"
    assert not wiz.field("data.live").visible


def test_a_failing_preflight_blocks_create_until_it_passes():
    from workbench.engine.preflight import Check

    calls = []

    def preflight(config):
        calls.append(config)
        ok = config.risk.stop_loss is not None or config.live.waive_stops
        return [Check("key", "pass", "found"),
                Check("stops", "warn" if config.live.waive_stops else "pass" if ok else "fail",
                      "no stop" if not config.risk.stop_loss else "set", "" if ok else "set a stop-loss")]

    wiz = Wizard(preflight=preflight)
    got = []
    wiz.on_create(lambda cfg, opts: got.append(cfg))
    live_form(wiz)
    assert wiz.create() is None and got == [] and len(calls) == 1  # Create ran the pre-flight: it failed
    assert wiz.step == REVIEW and "pre-flight failed (stops)" in wiz.status.value
    assert "set a stop-loss" in wiz.preflight_view.value and "fail" in wiz.preflight_view.value
    assert wiz.create_button.disabled
    w_(wiz, "live.waive_stops").value = "exits by hand"  # the config changed: Create checks again
    wiz.goto(REVIEW)
    assert not wiz.create_button.disabled
    cfg = wiz.create()
    assert got == [cfg] and cfg.live.waive_stops == "exits by hand" and len(calls) == 2
    assert "warn" in wiz.preflight_view.value
    wiz.goto(REVIEW)
    wiz.run_preflight()
    assert len(calls) == 3  # the button runs it again


def test_wizard_preflight_against_the_loopback_exchange(store):
    from tests.live_kit import manual_exchange
    from tests.test_preflight import KEYS, factory, rehearse
    from workbench.engine import preflight as pf

    with manual_exchange() as lx:
        wiz = Wizard(preflight=lambda cfg: pf.preflight(cfg, store, exchange=factory(lx), env=KEYS,
                                                        use_keyring=False))
        live_form(wiz)
        w_(wiz, "data.source").value = "ccxt"
        wiz.field("risk.stop_loss").widgets[0].value = "2"
        wiz.goto(REVIEW)
        checks = {c.name: c.status for c in wiz.run_preflight()}
        assert checks["authenticated"] == "pass" and checks["rehearsal"] == "fail"
        assert wiz.create() is None
        rehearse(store, wiz.build()[0])
        cfg = wiz.create()
        assert cfg is not None and cfg.risk.stop_loss == 0.02
        assert "wb-check-fail" not in wiz.preflight_view.value


def test_the_default_preflight_checks_the_wizards_own_store(store, monkeypatch):
    from tests.live_kit import manual_exchange
    from tests.test_preflight import KEYS, factory, rehearse
    from workbench.engine import preflight as pf

    with manual_exchange() as lx:
        monkeypatch.setattr(pf, "default_exchange", factory(lx))
        for k, v in KEYS.items():
            monkeypatch.setenv(k, v)
        wiz = Wizard(store=store)
        live_form(wiz)
        wiz.field("risk.stop_loss").widgets[0].value = "2"
        rehearse(store, wiz.build()[0])
        checks = {c.name: c for c in wiz.run_preflight()}
    assert checks["rehearsal"].status == "pass" and checks["authenticated"].status == "pass"
