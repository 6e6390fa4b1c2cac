"""Account-wide limits across sessions in different base currencies: one policy currency, converted sums."""
from __future__ import annotations

import json
import math
from datetime import timedelta

import pandas as pd
import pytest

from tests.kit import T0, bars_for, paper_config
from workbench.account import AccountGate, PolicyError, RiskPolicy, save_policy
from workbench.account.gate import CURRENCY, DAILY_LOSS, TOTAL
from workbench.data.sample import sample_bars

LIMITS = {"total_exposure": 10_000, "daily_loss": 500}


def gate_of(currency: str | None = "USDT", **limits: float) -> AccountGate:
    policy = {"accounts": {"paper": {**LIMITS, **limits}}} | ({"currency": currency} if currency else {})
    return AccountGate(RiskPolicy.model_validate(policy))


def usdt_and_btc(gate: AccountGate, btc_usdt: float = 50_000.0, **day_pnl: float) -> None:
    """A USDT session holding 6,000 USDT of BTC (its mark of BTC/USDT is the BTC rate) and a BTC session
    holding 0.05 BTC of ETH: 2,500 USDT at 50,000."""
    gate.report("u", "paper", "paper", {"BTC/USDT": 6_000.0}, day_pnl.get("u", 0.0), currency="USDT",
                marks={"BTC/USDT": btc_usdt})
    gate.report("b", "paper", "paper", {"ETH/BTC": 0.05}, day_pnl.get("b", 0.0), currency="BTC",
                marks={"ETH/BTC": 0.05})


def test_two_currencies_are_summed_in_the_policy_currency_up_to_the_limit_exactly():
    gate = gate_of()
    usdt_and_btc(gate)  # 6,000 + 0.05 x 50,000 = 8,500 USDT held
    assert gate.check("paper", "paper", "ETH/BTC", 0.03, session_id="b") is None  # +1,500 USDT: exactly 10,000
    b = gate.check("paper", "paper", "ETH/BTC", 0.0302, session_id="b")  # +1,510 USDT
    assert b is not None and (b.rule, b.currency) == (TOTAL, "USDT")
    assert (b.used, b.order_value) == (pytest.approx(8_500.0), pytest.approx(1_510.0))
    assert "holds 8,500.00 USDT; +1,510.00 USDT would pass the limit 10,000.00 USDT" in str(b)
    assert gate.check("paper", "paper", "BTC/USDT", 1_500.0, session_id="u") is None
    assert gate.check("paper", "paper", "BTC/USDT", 1_501.0, session_id="u").rule == TOTAL
    usdt_and_btc(gate, btc_usdt=40_000.0)  # the latest rate counts: 6,000 + 2,000
    assert gate.check("paper", "paper", "BTC/USDT", 2_000.0, session_id="u") is None
    total = gate.usage().set_index(["rule", "key"]).loc[(TOTAL, "total")]
    assert (total["used"], total["currency"]) == (pytest.approx(8_000.0), "USDT")


def test_the_days_losses_are_converted_before_they_are_added():
    gate = gate_of()
    usdt_and_btc(gate, u=-400.0, b=-0.0019)  # 400 + 95 USDT
    assert gate.check("paper", "paper", "BTC/USDT", 10.0, session_id="u") is None
    usdt_and_btc(gate, u=-400.0, b=-0.002)  # 400 + 100: the limit
    b = gate.check("paper", "paper", "BTC/USDT", 10.0, session_id="u")
    assert (b.rule, b.used, b.currency) == (DAILY_LOSS, pytest.approx(500.0), "USDT")


def test_a_rate_is_loaded_from_the_conversion_pair_or_its_inverse():
    gate = gate_of()
    gate.report("e", "paper", "paper", {"BTC/EUR": 4_000.0}, currency="EUR")
    usdt_per_eur = pd.DataFrame({"close": [0.9, 0.8]})  # USDT/EUR: 0.8 EUR a USDT, so 1.25 USDT a EUR
    problems = gate.load_rates(lambda pair: {"USDT/EUR": usdt_per_eur}[pair])
    assert problems == [] and gate.rates.rate("EUR", "USDT") == pytest.approx(1.25)
    assert gate.check("paper", "paper", "BTC/EUR", 4_000.0, session_id="e") is None  # 5,000 + 5,000 USDT
    assert gate.check("paper", "paper", "BTC/EUR", 4_001.0, session_id="e").rule == TOTAL


def test_a_session_whose_currency_cannot_be_converted_blocks_the_accounts_entries_and_shows():
    gate = gate_of()
    usdt_and_btc(gate)
    gate.report("e", "paper", "paper", {}, currency="EUR", marks={"BTC/EUR": 46_000.0})  # holds nothing
    assert gate.check("paper", "paper", "BTC/USDT", 100.0, session_id="u") is None  # nothing to count of e
    own = gate.check("paper", "paper", "BTC/EUR", 100.0, session_id="e")  # its order's value cannot be
    assert own is not None and (own.rule, own.key, own.unconverted) == (CURRENCY, "e", "EUR")
    gate.report("e", "paper", "paper", {"BTC/EUR": 1_000.0}, currency="EUR")
    b = gate.check("paper", "paper", "BTC/USDT", 1.0, session_id="u")
    assert b is not None and (b.rule, b.key, b.unconverted, b.currency) == (CURRENCY, "e", "EUR", "USDT")
    assert "session e keeps its books in EUR and no EUR to USDT rate is known" in str(b)
    assert b.numbers()["unconverted"] == "EUR" and math.isnan(b.limit)
    row = gate.usage().set_index("rule").loc[CURRENCY]
    assert row["key"] == "e in EUR: no rate into USDT" and math.isnan(row["used"])
    assert gate.load_rates(lambda pair: {"EUR/USDT": pd.DataFrame({"close": [1.1]})}[pair]) == []
    assert gate.check("paper", "paper", "BTC/USDT", 1.0, session_id="u") is None  # now counted: 1,100 USDT
    assert gate.usage().set_index(["rule", "key"]).loc[(TOTAL, "total"), "used"] == pytest.approx(9_600.0)
    health_only = AccountGate(RiskPolicy.model_validate({"accounts": {"paper": {"min_venue_health": 50}}}))
    health_only.report("e", "paper", "paper", {"BTC/EUR": 1_000.0}, currency="EUR")
    assert health_only.check("paper", "paper", "BTC/EUR", 1.0, session_id="e") is None  # no money limit


def test_the_policy_currency_defaults_to_the_one_the_sessions_share_else_usdt(tmp_path):
    gate = gate_of(None, total_exposure=1.0)
    assert gate.currency == "USDT"  # nobody reports yet
    gate.report("b", "paper", "paper", {"ETH/BTC": 0.6}, currency="BTC")
    assert gate.currency == "BTC" and gate.check("paper", "paper", "ETH/BTC", 0.4, session_id="b") is None
    assert gate.check("paper", "paper", "ETH/BTC", 0.41, session_id="b").rule == TOTAL
    gate.report("u", "paper", "paper", {}, currency="USDT", marks={"BTC/USDT": 50_000.0})
    assert gate.currency == "USDT"  # two currencies: the default
    with pytest.raises(PolicyError, match="currency: .*must be a currency code in capitals, like USDT"):
        save_policy({"currency": "usd t", "accounts": {}}, tmp_path / "p.yaml")


def test_sessions_report_their_currency_and_marks_through_the_engine():
    """A USDT and a BTC paper session stepped on one gate: the BTC one is counted at the USDT one's mark."""
    from workbench.engine.brokers import PaperBroker
    from workbench.engine.feeds import ReplayFeed
    from workbench.engine.trader import Trader

    gate = gate_of(total_exposure=1e9, daily_loss=1e9)
    configs = [paper_config(initial_balance=10_000), paper_config(symbols=["ETH/BTC"], initial_balance=0.2)]
    traders = [Trader(c, PaperBroker(c)) for c in configs]
    for t, sid in zip(traders, ("u", "b"), strict=True):
        t.risk.attach_account(gate, sid)
    frames = {**bars_for(configs[0]), **bars_for(configs[1])}
    for i, bars in enumerate(ReplayFeed(frames).bars()):
        for t, c in zip(traders, configs, strict=True):
            t.step({s: bars[s] for s in c.symbols if s in bars})
            t.risk.report_account(t.portfolio)
        u, b = (t.portfolio for t in traders)
        if u.exposure > 0 and b.exposure > 0 or i > 600:
            break
    assert u.exposure > 0 and b.exposure > 0, "both sessions should hold something (the test can fail)"
    used = gate.usage().set_index(["rule", "key"]).loc[(TOTAL, "total"), "used"]
    assert used == pytest.approx(u.exposure + b.exposure * u.marks["BTC/USDT"])


def _held(store, symbols: list[str], quantity: float, **fields: object) -> str:
    from workbench.config import make_config
    from workbench.domain import Position

    sid = store.create_session(make_config(kind="paper", symbols=symbols, **fields))
    store.set_state(sid, "running")
    store.heartbeat(sid, "other:1")
    store.add_equity_points(sid, [(T0 + timedelta(hours=30), 10_000.0, 9_000.0, 1_000.0)])
    store.upsert_position(sid, Position(symbols[0], quantity, 1.0))
    return sid


def test_risk_usage_shows_the_policy_currency_and_converted_sums(tmp_path, store, store_url, capsys, monkeypatch):
    from workbench.cli import main

    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    save_policy({"currency": "USDT", "accounts": {"paper": {"total_exposure": 50_000}}}, tmp_path / "risk-policy.yaml")
    _held(store, ["ETH/BTC"], 10.0, initial_balance=0.2)  # alone: its rate comes from the sample's BTC/USDT bars
    at = T0 + timedelta(hours=30)
    eth_btc, btc = sample_bars("ETH/BTC", days=2)["close"][at], sample_bars("BTC/USDT", days=2)["close"][at]
    assert main(["risk", "usage", "--db", store_url, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    total = next(r for r in out["accounts"] if r["rule"] == TOTAL)
    assert out["currency"] == "USDT" and total["currency"] == "USDT"
    assert total["used"] == pytest.approx(10.0 * eth_btc * btc)  # not 10 x eth_btc BTC added as USDT
    _held(store, ["BTC/USDT"], 0.5)
    assert main(["risk", "usage", "--db", store_url, "--json"]) == 0
    total = next(r for r in json.loads(capsys.readouterr().out)["accounts"] if r["rule"] == TOTAL)
    assert total["used"] == pytest.approx(10.0 * eth_btc * btc + 0.5 * btc)
    assert main(["risk", "usage", "--db", store_url]) == 0
    assert "account limits in USDT (every session's figures converted into it)" in capsys.readouterr().out
    from workbench.ui import risk

    view = risk(store)  # the risk dashboard names the currency of the limits too
    try:
        table = view.parts["accounts"].value
        assert "Currency</th>" in table and "USDT</td>" in table
    finally:
        view.close()


def test_the_host_loads_the_rate_a_session_in_another_currency_needs(store, store_url, tmp_path):
    """A BTC session alone under a USDT policy: refused (account_currency) until the host has loaded the
    BTC/USDT rate from the session's own data source, then its entries pass and are counted in USDT."""
    import asyncio

    from workbench.engine.host import run_host

    policy = tmp_path / "risk-policy.yaml"
    save_policy({"currency": "USDT", "accounts": {"*": {"total_exposure": 1e9}}}, policy)
    sid = store.create_session(paper_config(symbols=["ETH/BTC"], initial_balance=0.2, start="2024-01-01",
                                            end="2024-01-01T03:00:00Z"), state="requested")
    asyncio.run(run_host(store_url, poll=0.02, stop_after=2.5, resume_orphans=False, risk_policy=policy,
                         session_kwargs={"replay_speed": 3600}))  # 180 bars over 3 s: the host polls meanwhile
    assert store.get_session(sid)["state"] == "completed"
    assert len(store.trades(sid)) > 0, "every entry was refused: the host never loaded the BTC/USDT rate"
