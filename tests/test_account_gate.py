"""Account-wide limits (workbench.account): policy files, sectors, and the gate over several sessions."""
from __future__ import annotations

import pytest

from workbench.account import AccountGate, PolicyError, RiskPolicy, load_policy, save_policy, sector_of
from workbench.account.gate import DAILY_LOSS, SECTOR, SYMBOL, TOTAL, VENUE
from workbench.account.sectors import sector_exposure

POLICY = {"accounts": {"main": {"total_exposure": 10_000, "per_symbol": {"BTC/USDT": 6_000, "*": 4_000},
                                "per_sector": {"meme": 1_000}, "per_venue": {"kraken": 2_000}, "daily_loss": 500}},
          "sectors": {"PEPE": "meme", "XYZ/USDT": "smart-contract"}}


@pytest.fixture
def gate() -> AccountGate:
    return AccountGate(RiskPolicy.model_validate(POLICY))


def test_two_sessions_together_cannot_pass_the_account_limit_that_each_alone_respects(gate):
    gate.report("s1", "main", "binance", {"BTC/USDT": 5_000, "ETH/USDT": 3_000})
    assert gate.check("main", "binance", "ETH/USDT", 1_000, session_id="s2") is None
    gate.report("s2", "main", "binance", {"ETH/USDT": 1_000})
    breach = gate.check("main", "binance", "SOL/USDT", 1_500, session_id="s2")
    assert breach is not None and breach.rule == TOTAL
    assert (breach.limit, breach.used, breach.order_value) == (10_000, 9_000, 1_500)
    assert "account_exposure" in str(breach) and "9,000.00" in str(breach)
    assert gate.check("other", "binance", "SOL/USDT", 50_000) is None  # no policy for that account
    gate.forget("s1")
    assert gate.check("main", "binance", "SOL/USDT", 1_500) is None


def test_symbol_limits_with_a_default_for_every_other_symbol(gate):
    gate.report("s1", "main", "binance", {"BTC/USDT": 5_500, "ETH/USDT": 3_900})
    assert gate.check("main", "binance", "BTC/USDT", 600).rule == SYMBOL  # 6,100 > 6,000
    b = gate.check("main", "binance", "ETH/USDT", 200)
    assert (b.rule, b.key, b.limit) == (SYMBOL, "ETH/USDT", 4_000)


def test_sectors_come_from_the_users_map_then_the_bundled_one(gate):
    assert sector_of("DOGE/USDT") == "meme" and sector_of("BTC/USDT:USDT") == "currency"
    assert sector_of("PEPE/USDC", {"PEPE": "frogs"}) == "frogs" and sector_of("ZZZ/USDT") == "other"
    assert sector_of("XYZ/USDT", POLICY["sectors"]) == "smart-contract"
    gate.report("s1", "main", "binance", {"DOGE/USDT": 700})
    gate.report("s2", "main", "binance", {"PEPE/USDT": 200})
    b = gate.check("main", "binance", "SHIB/USDT", 200)
    assert (b.rule, b.key, b.used) == (SECTOR, "meme", 900)
    assert sector_exposure({"DOGE/USDT": 700, "PEPE/USDT": 200, "BTC/USDT": 50}, POLICY["sectors"]).to_dict() == {
        "meme": 900, "currency": 50}


def test_venue_and_daily_loss_across_sessions(gate):
    gate.report("s1", "main", "kraken", {"ETH/USDT": 1_500}, day_pnl=-300)
    assert gate.check("main", "kraken", "SOL/USDT", 600).rule == VENUE
    assert gate.check("main", "binance", "SOL/USDT", 600) is None
    gate.report("s2", "main", "binance", {}, day_pnl=-250)
    b = gate.check("main", "binance", "SOL/USDT", 10)
    assert (b.rule, b.used, b.limit) == (DAILY_LOSS, 550, 500)


def test_usage_lists_every_limit_with_what_is_used(gate):
    gate.report("s1", "main", "binance", {"BTC/USDT": 3_000, "DOGE/USDT": 500}, day_pnl=-100)
    u = gate.usage().set_index(["rule", "key"])
    assert u.loc[(TOTAL, "total"), "used"] == 3_500 and u.loc[(TOTAL, "total"), "share"] == pytest.approx(0.35)
    assert u.loc[(SYMBOL, "DOGE/USDT"), "limit"] == 4_000  # the "*" limit, shown for a held symbol
    assert u.loc[(SECTOR, "meme"), "used"] == 500 and u.loc[(VENUE, "kraken"), "used"] == 0
    assert u.loc[(DAILY_LOSS, "day"), "used"] == 100


@pytest.mark.parametrize("bad, field", [
    ({"accounts": {"main": {"total_exposure": -5}}}, "accounts.main.total_exposure"),
    ({"accounts": {"main": {"per_symbol": {"BTC/USDT": 0}}}}, "per_symbol['BTC/USDT'] must be a positive amount"),
    ({"accounts": {"main": {"max_exposure": 5}}}, "known fields"),
    ({"acounts": {}}, "acounts"),
    (["main"], "expected a mapping"),
])
def test_a_bad_policy_names_the_field_and_changes_nothing(tmp_path, bad, field):
    path = tmp_path / "risk-policy.yaml"
    save_policy(POLICY, path)
    before = path.read_bytes()
    with pytest.raises(PolicyError, match=field.replace("[", r"\[").replace("]", r"\]")):
        save_policy(bad, path)
    assert path.read_bytes() == before
    assert load_policy(path).limits_for("main").total_exposure == 10_000


def test_policy_files_load_from_yaml_or_json_and_a_missing_file_means_no_limits(tmp_path):
    assert load_policy(tmp_path / "none.yaml").accounts == {}
    j = tmp_path / "p.json"
    j.write_text('{"accounts": {"*": {"total_exposure": 100}}}')
    assert load_policy(j).limits_for("anything").total_exposure == 100
    broken = tmp_path / "broken.yaml"
    broken.write_text("accounts: {main: [")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(broken)
