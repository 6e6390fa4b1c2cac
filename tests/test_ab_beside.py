"""An A/B beside a live session: paper variants fed the bars the live session is handed (from the store,
as its feed keeps them), compared with the live session itself as the arm 'live'."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from tests.kit import paper_config, until, wait_until
from tests.live_kit import _start, live_exchange
from workbench.ab import ab_beside, ab_sessions
from workbench.store.session_bars import append_session_bars, session_bars


def stored_live_session(st: Any) -> tuple[str, Callable[[int], None]]:
    """A 'live' session that is only a store row (running), its first bar and equity point stored (seen
    before an A/B starts), and ``close(i)``, which stores its i-th minute bar and equity point as they close."""
    import pandas as pd

    sid = st.create_session(paper_config(data={"source": "ccxt", "live": True}), state="running")
    t0 = pd.Timestamp("2024-01-10", tz="UTC")

    def close(i: int) -> None:
        price, t = 100.0 + i, t0 + pd.Timedelta(minutes=i)
        append_session_bars(st, sid, [("BTC/USDT", t.to_pydatetime(), price, price + 1, price - 1, price, 5.0)])
        st.add_equity_points(sid, [(t, 10_000.0 + i)])

    close(0)
    return sid, close


def test_paper_variants_beside_a_live_session_see_its_bars_and_are_compared_with_it(store):
    async def go(lx):
        s, client = await _start(lx, store)
        try:
            await until(lambda: s.bars_seen >= 3)
            res = await ab_beside(store, s.id, {"A": {}, "B": {"risk.stop_loss": 0.01}}, bars=20,
                                  poll_interval=0.02, n_boot=200, label="bx")
            s.stop()
            await asyncio.wait_for(s.wait(), 20)
        finally:
            await client.close()
        return s, res

    with live_exchange() as lx:
        s, res = asyncio.run(go(lx))
    assert ab_sessions(store, "bx") == res.session_ids and set(res.session_ids) == {"live", "A", "B"}
    assert res.session_ids["live"] == s.id and res.kind == "beside"
    kept = session_bars(store, s.id, "BTC/USDT").index
    for name in "AB":
        row = store.get_session(res.session_ids[name])
        assert row["kind"] == "paper" and row["state"] == "completed" and row["parent_id"] == s.id
        seen = store.equity(res.session_ids[name]).index  # one point per bar the variant processed
        first = kept.get_loc(seen[0])
        assert len(seen) == 20 and first >= 3 and seen.equals(kept[first:first + 20])  # the live session's bars
        own = session_bars(store, res.session_ids[name], "BTC/USDT")  # kept for the variant's fidelity twin
        assert own.equals(session_bars(store, s.id, "BTC/USDT").loc[seen[0]:seen[-1]])
    live = store.equity(s.id)["equity"]
    t1 = res.equity.index[0]
    assert t1 == store.equity(res.session_ids["A"]).index[0]  # compared from the variants' first bar
    scale = s.config.initial_balance / live[live.index < t1].iloc[-1]
    assert res.equity["live"].to_numpy() == pytest.approx(live.loc[t1:res.equity.index[-1]].to_numpy() * scale)
    assert set(res.verdict.stats) == {"live", "A", "B"}
    assert [v["name"] for v in res.to_dict()["variants"]] == ["live", "A", "B"]


def test_beside_a_replayed_session_is_refused(store):
    sid = store.create_session(paper_config(), state="running")
    with pytest.raises(ValueError, match="needs one on live bars"):
        asyncio.run(ab_beside(store, sid, [{}, {}]))


def test_cli_beside_runs_until_the_live_session_ends_and_prints_the_live_arm(store_url, capsys):
    """`workbench ab --beside`: the 'live' session here is a store row whose bars and equity another thread
    writes as they close, then ends it; the variants end with it."""
    import json
    import threading

    from workbench.cli import main
    from workbench.store import Store

    st = Store(store_url)
    sid, close = stored_live_session(st)

    def live_side() -> None:
        try:
            wait_until(lambda: len(st.list_sessions()) == 3, timeout=60)  # both variants exist
            for i in range(1, 9):
                close(i)
        finally:  # the variants end with it, whatever happened here
            st.set_state(sid, "completed", actor="test", message="the live session ended")

    writer = threading.Thread(target=live_side, daemon=True)
    writer.start()
    code = main(["ab", "--beside", sid, "--variant", "", "--variant", "fast=3", "--db", store_url, "--poll", "0.02",
                 "--n-boot", "100", "--json"])
    writer.join(10)
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["kind"] == "beside"
    assert [v["name"] for v in doc["variants"]] == ["live", "A", "B"] and doc["variants"][0]["session_id"] == sid
    for v in doc["variants"][1:]:
        assert len(st.equity(v["session_id"])) == 8  # the 8 bars stored after it started
    st.close()
    assert main(["ab", "--beside", sid, "--kind", "paper", "--variant", "", "--variant", "", "--db", store_url]) == 2
    assert "--kind do(es) not apply to an A/B --beside" in capsys.readouterr().err
