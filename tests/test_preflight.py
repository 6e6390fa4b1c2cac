"""Pre-flight of a live session (workbench.engine.preflight, ``workbench preflight``) against the loopback
exchange with real ccxt over HTTP: every check passes on a ready setup, and each fault fails its check
with what to do."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.exchange.fixtures import async_client
from tests.exchange.server import API_KEY, API_SECRET
from tests.live_kit import live_config, manual_exchange
from workbench.cli import main
from workbench.engine import preflight as pf

pytestmark = pytest.mark.live_battery

KEYS = {"WORKBENCH_BINANCE_MAIN_API_KEY": API_KEY, "WORKBENCH_BINANCE_MAIN_SECRET": API_SECRET}


@pytest.fixture
def mx():
    with manual_exchange() as exchange:
        yield exchange


def factory(lx):
    """Clients of the loopback made from the credentials pre-flight found (no key: a keyless one)."""
    def make(config, credentials):
        cfg = credentials.ccxt_config() if credentials is not None else {}
        return async_client(lx, cfg.get("apiKey"), cfg.get("secret"))
    return make


def rehearse(store, config, kinds=("backtest", "paper")):
    """Record completed earlier runs of ``config``'s strategy and symbols."""
    for kind in kinds:
        store.create_session(config.replace(kind=kind, data={"source": "sample"}), state="completed")


def run(lx, store, config, env=KEYS):
    checks = pf.preflight(config, store, exchange=factory(lx), env=env, use_keyring=False)
    return {c.name: c for c in checks}


def test_a_ready_setup_passes_every_check(mx, store):
    config = live_config()
    rehearse(store, config)
    checks = run(mx, store, config)
    assert [n for n, c in checks.items() if c.status != "pass"] == [], checks
    assert set(checks) == {"key", "authenticated", "permissions", "balance", "exchange status",
                           "market BTC/USDT", "sizing BTC/USDT", "stops", "rehearsal"}
    assert "1,000.00 USDT" in checks["sizing BTC/USDT"].detail  # 10 % of 10,000


def test_a_refused_key_fails_authentication_and_nothing_signed_follows(mx, store):
    config = live_config()
    rehearse(store, config)
    checks = run(mx, store, config, env={**KEYS, "WORKBENCH_BINANCE_MAIN_API_KEY": "wrong-key-123"})
    assert checks["key"].status == "pass"
    assert checks["authenticated"].status == "fail" and "refused the key" in checks["authenticated"].detail
    assert "IP allow-list" in checks["authenticated"].todo
    assert "permissions" not in checks and "balance" not in checks
    assert checks["market BTC/USDT"].status == "pass"  # public checks still run
    assert "wrong-key-123" not in json.dumps([c.to_dict() for c in checks.values()])


def test_no_key_fails_saying_where_to_put_it(mx, store):
    checks = run(mx, store, live_config(), env={})
    assert checks["key"].status == "fail" and "WORKBENCH_BINANCE_MAIN_API_KEY" in checks["key"].detail
    assert "authenticated" not in checks


def test_a_halted_market_and_maintenance_fail(mx, store):
    config = live_config()
    rehearse(store, config)
    mx.halt_market("BTC/USDT")
    mx.set_maintenance()
    checks = run(mx, store, config)
    assert checks["market BTC/USDT"].status == "fail" and "BREAK" in checks["market BTC/USDT"].detail
    assert "sizing BTC/USDT" not in checks
    assert checks["exchange status"].status == "fail" and "maintenance" in checks["exchange status"].detail


def test_sizing_below_the_minimum_notional_or_lot_fails(mx, store):
    small = live_config(sizing={"mode": "fixed_amount", "value": 2.0})  # loopback minNotional: 5 USDT
    rehearse(store, small)
    check = run(mx, store, small)["sizing BTC/USDT"]
    assert check.status == "fail" and "minimum notional 5.00 USDT" in check.detail
    assert "at least 5.00 USDT" in check.todo
    tiny = live_config(sizing={"mode": "fixed_quantity", "value": 0.000001})  # minQty 0.00001
    check = run(mx, store, tiny)["sizing BTC/USDT"]
    assert check.status == "fail" and "lot size minimum" in check.detail


def test_key_permissions_and_budget_against_the_account(mx, store):
    config = live_config(initial_balance=500_000.0)  # the loopback account holds 100,000 USDT
    mx.set_permissions(canWithdraw=True)
    checks = run(mx, store, config)
    assert checks["permissions"].status == "warn" and "withdraw" in checks["permissions"].detail
    assert checks["balance"].status == "fail" and "100,000.00" in checks["balance"].todo
    mx.set_permissions(canTrade=False, canWithdraw=False)
    assert run(mx, store, config)["permissions"].status == "fail"


def test_stops_and_rehearsal_fail_unless_waived(mx, store):
    bare = live_config(risk={})
    checks = run(mx, store, bare)
    assert checks["stops"].status == "fail" and "live.waive_stops" in checks["stops"].todo
    assert checks["rehearsal"].status == "fail" and "no completed backtest and no paper" in checks["rehearsal"].detail
    rehearse(store, bare, kinds=("backtest",))
    assert "no completed paper run" in run(mx, store, bare)["rehearsal"].detail
    waived = live_config(risk={}, live={"waive_stops": "exits are manual", "waive_rehearsal": "tiny test"})
    checks = run(mx, store, waived)
    assert (checks["stops"].status, checks["rehearsal"].status) == ("warn", "warn")
    assert "exits are manual" in checks["stops"].detail


def test_runs_older_than_30_days_or_on_other_symbols_do_not_count(mx, store):
    config = live_config()
    store.create_session(config.replace(kind="backtest", symbols=["ETH/USDT"], data={"source": "sample"}),
                         state="completed")
    rehearse(store, config, kinds=("paper",))
    assert run(mx, store, config)["rehearsal"].status == "fail"
    rehearse(store, config, kinds=("backtest",))
    later = datetime.now(timezone.utc) + timedelta(days=31)
    checks = pf.preflight(config, store, exchange=factory(mx), env=KEYS, use_keyring=False, now=later)
    assert {c.name: c for c in checks}["rehearsal"].status == "fail"


def test_cli_prints_the_checks_and_exits_non_zero_on_a_fail(mx, store_url, tmp_path, monkeypatch, capsys):
    from workbench.store import Store

    config = live_config()
    path = tmp_path / "live.json"
    path.write_text(config.to_json())
    monkeypatch.setattr(pf, "default_exchange", factory(mx))
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    code = main(["preflight", "--config", str(path), "--db", store_url, "--json", "--no-keyring"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1 and doc["ok"] is False
    assert {c["name"]: c["status"] for c in doc["checks"]}["rehearsal"] == "fail"
    rehearse(Store(store_url), config)
    assert main(["preflight", "--config", str(path), "--db", store_url, "--no-keyring"]) == 0
    out = capsys.readouterr().out
    assert "PASS  rehearsal" in out and "all checks pass" in out


def test_live_settings_are_validated_config_fields_the_session_uses():
    from workbench.config import ConfigError

    with pytest.raises(ConfigError, match="live.reconcile_every"):
        live_config(live={"reconcile_every": 0})
    with pytest.raises(ConfigError, match="live.mismatch_trip"):
        live_config(live={"mismatch_trip": 2})
    assert live_config(live={"mismatch_trip": None}).live.mismatch_trip is None


def test_waivers_are_recorded_as_events_when_a_live_session_starts(store):
    import asyncio

    from tests.kit import until
    from tests.live_kit import ARMED, FAST, NEVER, feed_for
    from workbench.engine import open_session

    config = live_config(params=NEVER, risk={}, live={
        "waive_stops": "exits by hand", "waive_rehearsal": "smoke test", "reconcile_every": 7.0,
        "time_sync_every": 11.0, "mismatch_trip": None})

    async def go(lx):
        client = async_client(lx)
        try:
            s = open_session(config, store, exchange=client, arming=ARMED,
                             feed=feed_for(client, config, stale_bars=100_000), **FAST)
            assert (s.broker.reconcile_every, s.broker.time_sync_every, s.broker.mismatch_trip) == (7.0, 11.0, None)
            s.start()
            await until(lambda: s.bars_seen >= 1)
            s.stop()
            await until(lambda: lx.advance(1) or s.state.is_final, step=0.05)  # a bar a try until it ends
            return s.id
        finally:
            await client.close()

    with manual_exchange() as lx:
        sid = asyncio.run(go(lx))
    ev = store.events(sid, kinds=["waiver"])
    assert sorted(d["check"] for d in ev["data"]) == ["rehearsal", "stops"]
    assert any("exits by hand" in m for m in ev["message"])


def test_the_budget_counts_what_other_live_sessions_on_the_account_hold(mx, store):
    store.create_session(live_config(initial_balance=95_000.0), state="running")  # holds 95,000 of 100,000
    check = run(mx, store, live_config())["balance"]
    assert check.status == "fail" and "held by 1 other live session" in check.detail
    assert "at most 5,000.00" in check.todo
