"""A paper A/B: two variants as paper sessions on one replayed feed, in a real SQLite store."""
from __future__ import annotations

import asyncio

import pytest

from tests.kit import paper_config
from workbench.ab import EarlyStop, ab_equity, ab_paper, ab_sessions
from workbench.engine.feeds import SHARED
from workbench.store import Store

FEW_BARS = {"start": "2024-01-01T00:00:00Z", "end": "2024-01-01T03:59:00Z"}  # 240 one-minute sample bars


def test_two_paper_variants_replay_one_feed_into_the_store(store: Store):
    cfg = paper_config(**FEW_BARS)
    loads = SHARED.loads
    res = asyncio.run(ab_paper(cfg, [{}, {}], store, poll_interval=0.05, label="t1", n_boot=200))
    assert SHARED.loads - loads == 1  # the bars were loaded once for both sessions
    assert ab_sessions(store, "t1") == res.session_ids and set(res.session_ids) == {"A", "B"}
    for sid in res.session_ids.values():
        row = store.get_session(sid)
        assert row["state"] == "completed" and row["kind"] == "paper" and row["name"].startswith("A/B t1 ")
    eq = ab_equity(store, res.session_ids)
    assert len(eq) == 240 and eq["A"].equals(eq["B"])  # same bars, same trades
    assert res.winner is None and res.verdict.text.startswith("no significant difference")
    assert res.metrics.loc["A", "trade_count"] == res.metrics.loc["B", "trade_count"] > 0


def test_early_stop_stops_a_clearly_losing_variant(store: Store):
    cfg = paper_config(**FEW_BARS, params={"fast": 2, "slow": 3})
    # B churns with a 2 % fee per fill; A never enters (its fast SMA cannot exceed a 3-bar one by 50 %)
    variants = {"A": {"strategy": "momentum", "entry_threshold": 0.5}, "B": {"commission.taker": 0.02}}
    rule = EarlyStop(min_periods=40, every=0.05, n_boot=200)
    res = asyncio.run(ab_paper(cfg, variants, store, speed=60 * 150, early_stop=rule, poll_interval=0.05,
                               n_boot=200))
    assert list(res.stopped) == ["B"] and "A/B early stop" in res.stopped["B"]
    assert store.get_session(res.session_ids["B"])["state"] == "stopped"
    assert store.get_session(res.session_ids["A"])["state"] == "completed"
    assert len(ab_equity(store, {"B": res.session_ids["B"]})) < 240


def test_a_live_data_config_is_refused(store: Store):
    cfg = paper_config(data={"source": "ccxt", "live": True})
    with pytest.raises(ValueError, match="a paper A/B replays bars"):
        asyncio.run(ab_paper(cfg, [{}, {}], store))


def test_cli_paper_ab_prints_both_sessions_and_the_verdict(tmp_path, store_url, capsys):
    import json

    from workbench.cli import main

    path = tmp_path / "paper.json"
    path.write_text(paper_config(start="2024-01-01T00:00:00Z", end="2024-01-01T01:59:00Z").to_json())
    code = main(["ab", "--config", str(path), "--variant", "", "--variant", "fast=3", "--db", store_url,
                 "--poll", "0.05", "--n-boot", "200", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["kind"] == "paper" and doc["period"] == "bar"
    ids = [v["session_id"] for v in doc["variants"]]
    st = Store(store_url)
    assert len(set(ids)) == 2 and all(st.get_session(i)["state"] == "completed" for i in ids)
    st.close()
    assert doc["verdict"]["periods"] == 120 and doc["verdict"]["winner"] in (None, "A", "B")


def test_cancelling_a_paper_ab_kills_its_running_variants(store: Store):
    from tests.kit import until

    cfg = paper_config(**FEW_BARS)

    async def scenario() -> None:
        task = asyncio.ensure_future(ab_paper(cfg, [{}, {"fast": 3}], store, speed=60.0, poll_interval=0.05,
                                              label="cancel"))
        await until(lambda: len(ab_sessions(store, "cancel")) == 2 and all(
            store.get_session(i)["state"] == "running" for i in ab_sessions(store, "cancel").values()), timeout=20)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert {store.get_session(i)["state"] for i in ab_sessions(store, "cancel").values()} == {"killed"}
