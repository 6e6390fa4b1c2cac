"""Pre-flight of a live session on perpetuals (BASE/QUOTE:SETTLE) against the loopback's USDⓈ-M market:
the budget comes from the futures wallet, a halted perpetual fails, spot and perpetuals are not mixed."""
from __future__ import annotations

import pytest

from tests.exchange.server import LoopbackExchange
from tests.live_kit import live_config
from tests.test_preflight import run

pytestmark = pytest.mark.live_battery
PERP = "BTC/USDT:USDT"


@pytest.fixture
def px():
    with LoopbackExchange(symbols=("BTC/USDT",), days=30, clock="2024-01-10", perps=(PERP,),
                          perp_balances={"USDT": 5_000.0}) as exchange:
        yield exchange


def perp_config(**kw):
    return live_config(symbols=[PERP], live={"waive_rehearsal": "perpetuals test"}, **kw)


def test_perpetual_market_sizing_and_the_futures_wallet(px, store):
    checks = run(px, store, perp_config(initial_balance=4_000.0))
    assert [n for n, c in checks.items() if c.status != "pass" and n != "rehearsal"] == [], checks
    assert {f"market {PERP}", f"sizing {PERP}"} <= set(checks)
    assert "of 5,000.00 USDT free" in checks["balance"].detail  # the futures wallet, not the spot 100,000
    assert "USDT:USDT" not in checks[f"sizing {PERP}"].detail
    over = run(px, store, perp_config(initial_balance=10_000.0))
    assert over["balance"].status == "fail" and "5,000.00 USDT free" in over["balance"].detail


def test_a_halted_perpetual_and_a_mixed_session_fail(px, store):
    px.halt_market(PERP, "SETTLING")
    checks = run(px, store, perp_config())
    assert checks[f"market {PERP}"].status == "fail" and "SETTLING" in checks[f"market {PERP}"].detail
    mixed = run(px, store, live_config(symbols=["BTC/USDT", PERP], live={"waive_rehearsal": "test"}))
    assert mixed["markets"].status == "fail" and "two sessions" in mixed["markets"].todo


def test_shorts_and_leverage_need_a_perpetual_within_its_maximum(px, store):
    px.set_max_leverage(PERP, 10)
    ok = run(px, store, perp_config(direction="short", margin={"leverage": 10}, initial_balance=1_000.0))
    assert ok["shorts"].status == "pass" and ok[f"leverage {PERP}"].status == "pass"
    assert "1,000.00 USDT" in ok[f"sizing {PERP}"].detail  # 10 % of the buying power 10 x 1,000
    high = run(px, store, perp_config(direction="both", margin={"leverage": 20}))
    assert high[f"leverage {PERP}"].status == "fail" and "at most 10" in high[f"leverage {PERP}"].todo
    spot = run(px, store, live_config(direction="short", margin={"leverage": 2}, live={"waive_rehearsal": "t"}))
    assert spot["shorts"].status == "fail" and "BTC/USDT:USDT" in spot["shorts"].todo
    assert spot["leverage"].status == "fail"
