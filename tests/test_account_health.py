"""Counterparty risk: venue health from the sessions' own history, and the policy's minimum health."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.kit import paper_config
from workbench.account import AccountGate, RiskPolicy
from workbench.account.gate import HEALTH
from workbench.account.health import Health, health_frame, venue_health
from workbench.domain import Order, OrderStatus, Side


def test_the_score_by_hand():
    h = Health("binance", orders=10, retries=2, refusals=1, stale=1)
    assert h.score == pytest.approx(100 * (1 - 2 / 12) - 100 * 1 / 10 - 10)
    assert Health("quiet").score == 100.0 and Health("bad", orders=1, errors=5).score == 0.0
    frame = health_frame([Health("a"), h])
    assert list(frame["venue"]) == ["binance", "a"]  # worst first


def test_venue_health_reads_the_live_sessions_history_within_the_lookback(store):
    live = paper_config(kind="live", data={"source": "ccxt", "exchange": "kraken"})
    sid = store.create_session(live)
    store.create_session(paper_config())  # paper sessions have no counterparty
    now = datetime.now(timezone.utc)
    for i in range(4):
        store.upsert_order(sid, Order(f"c{i}", "BTC/USDT", Side.BUY, 1.0, status=OrderStatus.FILLED,
                                      created_at=now - timedelta(minutes=5)))
    store.add_event(sid, "exchange_retry", "fetch_order: NetworkError; retry", {"error": "NetworkError"})
    store.add_event(sid, "order_rejected", "refused by kraken", {"client_id": "c9", "error": "InsufficientFunds"})
    store.add_event(sid, "order_rejected", "rejected by max_position", {"rule": "max_position"})  # ours, not theirs
    store.add_event(sid, "feed_stale", "no new bar")
    h = venue_health(store, now + timedelta(seconds=1))["kraken"]
    assert (h.orders, h.retries, h.refusals, h.stale) == (4, 1, 1, 1)
    assert h.score == pytest.approx(100 * (1 - 1 / 5) - 100 / 4 - 10)
    assert set(venue_health(store, now)) == {"kraken"}
    later = venue_health(store, now + timedelta(days=2))["kraken"]  # outside the lookback: all forgotten
    assert later.score == 100.0


def test_the_policy_refuses_entries_at_a_venue_below_its_minimum_health():
    gate = AccountGate(RiskPolicy.model_validate({"accounts": {"main": {"min_venue_health": 60}}}))
    assert gate.check("main", "kraken", "BTC/USDT", 100) is None  # nothing known: no refusal
    gate.set_health({"kraken": 45.0, "binance": 90.0})
    b = gate.check("main", "kraken", "BTC/USDT", 100)
    assert b.rule == HEALTH and "kraken scores 45 of 100 (the policy needs 60)" in str(b)
    assert gate.check("main", "binance", "BTC/USDT", 100) is None
