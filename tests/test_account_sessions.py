"""The account gate in front of real sessions' entries: the shipped Trader, and workbench host."""
from __future__ import annotations

import asyncio

import pytest

from tests.kit import bars_for, paper_config
from workbench.account import AccountGate, RiskPolicy, save_policy
from workbench.engine.brokers import PaperBroker
from workbench.engine.feeds import ReplayFeed
from workbench.engine.host import run_host
from workbench.engine.trader import Trader

LIMIT = 5_000.0  # each session alone enters 40 % of 10,000 = 4,000; two together would hold 8,000


def run_pair(gate: AccountGate | None) -> tuple[list[Trader], list[float], list[dict]]:
    """Two paper sessions (different strategies, same symbol) stepped bar by bar on one account."""
    configs = [paper_config(initial_balance=10_000),
               paper_config(initial_balance=10_000, params={"fast": 3, "slow": 8})]
    traders: list[Trader] = []
    events: list[dict] = []
    for i, cfg in enumerate(configs):
        t = Trader(cfg, PaperBroker(cfg))
        if gate is not None:
            t.risk.attach_account(gate, f"s{i}")
        traders.append(t)
    frames = bars_for(configs[0], days=2)
    held = []
    for bars in ReplayFeed(frames).bars():
        for t in traders:
            t.step(bars)
            events += [{"kind": e["kind"], **e["data"]} for e in t.risk.drain_events()]
        held.append(sum(t.portfolio.exposure for t in traders))
    return traders, held, events


def test_two_sessions_together_stay_within_the_account_limit_each_alone_respects():
    free = run_pair(None)[1]
    assert max(free) > LIMIT * 1.3  # without the gate they do hold more together (the test can fail)
    gate = AccountGate(RiskPolicy.model_validate({"accounts": {"paper": {"total_exposure": LIMIT}}}))
    traders, held, events = run_pair(gate)
    assert max(held) <= LIMIT * 1.05  # entries within the limit; marks drift a little after entry
    refused = [e for e in events if e["kind"] == "order_rejected" and e["rule"] == "account_exposure"]
    assert refused, "no entry was refused by the account limit"
    first = refused[0]
    assert first["limit"] == LIMIT and first["account"] == "paper" and first["used"] + first["order_value"] > LIMIT
    assert all(t.portfolio.trade_log() for t in traders)  # both still trade, one at a time


def test_the_host_puts_its_policy_in_front_of_every_session(store, store_url, tmp_path):
    policy = tmp_path / "risk-policy.yaml"
    save_policy({"accounts": {"*": {"total_exposure": LIMIT}}}, policy)
    ids = [store.create_session(paper_config(initial_balance=10_000, params=p, start="2024-01-01",
                                             end="2024-01-01T12:00:00Z"), state="requested")
           for p in ({"fast": 5, "slow": 20}, {"fast": 3, "slow": 8})]
    ran = asyncio.run(run_host(store_url, poll=0.02, stop_after=0.3, resume_orphans=False, risk_policy=policy))
    assert sorted(ran) == sorted(ids)
    rules = {sid: {(d or {}).get("rule") for d in store.events(sid, kinds=["order_rejected"])["data"]} for sid in ids}
    assert any("account_exposure" in r for r in rules.values()), rules


def test_a_bad_policy_file_stops_the_host_before_it_runs_anything(store, store_url, tmp_path):
    policy = tmp_path / "risk-policy.yaml"
    policy.write_text("accounts: {paper: {total_exposure: -1}}")
    sid = store.create_session(paper_config(), state="requested")
    with pytest.raises(ValueError, match="accounts.paper.total_exposure"):
        asyncio.run(run_host(store_url, poll=0.02, stop_after=0.1, risk_policy=policy))
    assert store.get_session(sid)["state"] == "requested"
