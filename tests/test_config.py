"""SessionConfig: validation names the field, the value and what is allowed; JSON round-trips."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.config import ConfigError, SessionConfig, TimeRestrictions, Window, make_config
from workbench.domain import SessionKind


def test_defaults_are_valid_and_round_trip():
    cfg = make_config()
    assert cfg.kind is SessionKind.BACKTEST
    assert SessionConfig.from_json(cfg.to_json()) == cfg


def test_full_config_round_trips_through_json():
    cfg = make_config(
        kind="paper",
        strategy="sma_cross",
        params={"fast": 5, "slow": 20},
        symbols=["BTC/USDT", "ETH/USDT"],
        initial_balance=2500,
        sizing={"mode": "fixed_amount", "value": 500},
        commission={"taker": 0.00075, "maker": 0.0002, "fixed": 0.1},
        slippage={"model": "volume", "bps": 2, "impact": 0.5},
        volume={"min_bar_volume": 1, "max_share": 0.1, "on_excess": "skip"},
        time={"timezone": "America/New_York", "trading_hours": {"start": "09:30", "end": "16:00"},
              "blackouts": [{"start": "12:00", "end": "12:30"}], "weekdays": [0, 1, 2, 3, 4]},
        risk={"max_position": 1000, "portfolio_limit": 3000, "stop_loss": 0.05, "take_profit": 0.1,
              "trailing_stop": 0.03, "max_holding_minutes": 240,
              "circuit_breaker": {"max_daily_loss": 0.05, "action": "reducing"}},
        start="2024-01-02", end="2024-01-20T12:00:00Z",
    )
    again = SessionConfig.from_json(cfg.to_json())
    assert again == cfg
    assert again.start == datetime(2024, 1, 2, tzinfo=timezone.utc)
    assert again.risk.circuit_breaker.action == "reducing"


@pytest.mark.parametrize(
    "fields, field, fragment",
    [
        ({"initial_balance": -5}, "initial_balance", "greater than 0"),
        ({"risk": {"stop_loss": 1.0}}, "risk.stop_loss", "less than 1"),
        ({"strategy": "nope"}, "strategy", "choose one of"),
        ({"symbols": []}, "symbols", "at least one symbol"),
        ({"symbols": ["btcusdt"]}, "symbols", "BASE/QUOTE"),
        ({"symbols": ["BTC/USDT", "BTC/USDT"]}, "symbols", "more than once"),
        ({"start": "2024-02-01", "end": "2024-01-01"}, "end", "after start"),
        ({"time": {"blackouts": [{"start": "25:00", "end": "01:00"}]}}, "time.blackouts.0.start", "HH:MM"),
        ({"time": {"timezone": "Mars/Olympus"}}, "time.timezone", "IANA"),
        ({"sizing": {"mode": "percent_equity", "value": 5}}, "sizing", "fraction"),
        ({"params": {"fastt": 3}, "strategy": "sma_cross"}, "params", "known: fast, slow"),
        ({"params": {"fast": 40, "slow": 20}, "strategy": "sma_cross"}, "params", "smaller than"),
        ({"params": {"fast": "ten"}, "strategy": "sma_cross"}, "params", "must be int"),
        ({"data": {"source": "csv"}}, "data", "csv_path"),
        ({"colour": "red"}, "colour", "unknown setting"),
    ],
)
def test_bad_input_names_field_value_and_what_is_allowed(fields, field, fragment):
    with pytest.raises(ConfigError) as info:
        make_config(**fields)
    problems = {f: msg for f, _, msg in info.value.problems}
    assert field in problems, info.value.problems
    assert fragment in problems[field]
    assert field in str(info.value) and "got" in str(info.value)


def test_from_json_rejects_garbage_clearly():
    with pytest.raises(ConfigError, match="not valid JSON"):
        SessionConfig.from_json("{nope")


def test_window_wraps_midnight():
    from workbench.execution import entry_allowed_at  # the one definition of the window rule

    def contains(w: Window, hh: int, mm: int) -> bool:
        return entry_allowed_at(datetime(2024, 1, 3, hh, mm, tzinfo=timezone.utc), TimeRestrictions(trading_hours=w))

    w = Window(start="22:00", end="02:00")
    assert contains(w, 23, 0) and contains(w, 1, 59) and not contains(w, 2, 0)
    assert contains(Window(start="00:00", end="24:00"), 23, 59)


# ---- property-based: random configs are valid or rejected with a field-naming ConfigError ----
_num = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-10**6, max_value=10**13),
    st.text(max_size=5),
    st.none(),
)
_hhmm = st.one_of(
    st.from_regex(r"^[0-2][0-9]:[0-5][0-9]$", fullmatch=True), st.text(max_size=6), st.integers()
)
_symbol = st.one_of(
    st.sampled_from(["BTC/USDT", "ETH/USDT", "btc/usdt", "BTCUSDT", "", "A/B", "SOL/USDT"]),
    st.text(max_size=12),
)
_configs = st.fixed_dictionaries(
    {},
    optional={
        "kind": st.sampled_from(["backtest", "paper", "live", "other", 3]),
        "strategy": st.sampled_from(["sma_cross", "momentum", "nope", ""]),
        "params": st.dictionaries(st.sampled_from(["fast", "slow", "x"]), _num, max_size=3),
        "symbols": st.lists(_symbol, max_size=4),
        "initial_balance": _num,
        "sizing": st.fixed_dictionaries(
            {}, optional={"mode": st.sampled_from(["fixed_amount", "percent_equity", "fixed_quantity", "x"]),
                          "value": _num}),
        "commission": st.fixed_dictionaries({}, optional={"taker": _num, "maker": _num, "fixed": _num}),
        "slippage": st.fixed_dictionaries(
            {}, optional={"model": st.sampled_from(["fixed", "volume", "?"]), "bps": _num, "impact": _num}),
        "volume": st.fixed_dictionaries(
            {}, optional={"min_bar_volume": _num, "max_share": _num, "on_excess": st.sampled_from(["cap", "skip", 1])}),
        "time": st.fixed_dictionaries(
            {},
            optional={
                "timezone": st.sampled_from(["UTC", "Europe/London", "Nowhere/Land", ""]),
                "trading_hours": st.one_of(st.none(), st.fixed_dictionaries({"start": _hhmm, "end": _hhmm})),
                "blackouts": st.lists(st.fixed_dictionaries({"start": _hhmm, "end": _hhmm}), max_size=2),
                "weekdays": st.lists(st.integers(-2, 9), max_size=8),
            },
        ),
        "risk": st.fixed_dictionaries(
            {},
            optional={k: _num for k in ("max_position", "portfolio_limit", "stop_loss", "take_profit",
                                        "trailing_stop", "max_holding_minutes", "concentration_limit")},
        ),
        "start": st.one_of(st.datetimes(), st.text(max_size=12), st.none()),
        "end": st.one_of(st.datetimes(), st.text(max_size=12), st.none()),
        "bogus": _num,
    },
)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_configs)
def test_random_configs_are_valid_or_rejected_with_a_clear_message(fields):
    try:
        cfg = make_config(**fields)
    except ConfigError as e:
        assert e.problems
        for field, _value, message in e.problems:
            assert field and field != "<config>", e.problems
            assert message and "Traceback" not in message
        return
    # valid: it must survive a JSON round trip unchanged
    assert SessionConfig.from_json(cfg.to_json()) == cfg
    json.loads(cfg.to_json())
