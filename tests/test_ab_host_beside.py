"""An A/B beside a live session is crash-only: its variants say in their config which session's stored bars
feed them, so a host resumes them, after the process running them was SIGKILLed, on those bars from their
checkpoints, not on the exchange; they end as an uninterrupted run on the same stored bars ends."""
from __future__ import annotations

import asyncio
import signal
import sys

import pytest

from tests.kit import until
from tests.live_kit import _start, live_exchange
from workbench.ab import ab_sessions
from workbench.ab.host import ab_follow
from workbench.domain import SessionState
from workbench.engine import open_session
from workbench.engine.host import run_host
from workbench.engine.stored_feed import StoredBarsFeed
from workbench.store.session_bars import append_session_bars, session_bars

LEASE = {"lease_seconds": 1.0}  # the killed runner's variants are taken over a second later
BESIDE = ("import asyncio, sys\nfrom workbench.ab import ab_beside\nfrom workbench.store import Store\n"
          "asyncio.run(ab_beside(Store(sys.argv[1]), sys.argv[2], {'A': {}, 'B': {'risk.stop_loss': 0.003}}, "
          f"poll_interval=0.05, label='bk', **{LEASE!r}))")
FILL_COLUMNS = ["time", "symbol", "side", "quantity", "price", "commission", "slippage"]


def _checkpointed(store, sid: str, bars: int) -> bool:
    state = store.load_runner_state(sid)
    return state is not None and state["bars_seen"] >= bars


@pytest.mark.slow  # a real process killed mid-run, a host, a live session on the loopback: the crash-only proof
def test_beside_variants_killed_with_their_process_are_resumed_by_a_host_on_the_live_sessions_bars(store_url, store):
    async def go(lx):
        live, client = await _start(lx, store)
        try:
            await until(lambda: live.bars_seen >= 3)
            ab = await asyncio.create_subprocess_exec(sys.executable, "-c", BESIDE, store_url, live.id,
                                                      stderr=asyncio.subprocess.PIPE)
            try:
                def running() -> dict[str, str] | None:
                    assert ab.returncode is None, "the A/B process died on its own"
                    found = ab_sessions(store, "bk")
                    return found if len(found) == 3 and all(_checkpointed(store, found[n], 10) for n in "AB") else None

                ids = await until(running, timeout=60, message="both variants checkpointed in the A/B process")
            finally:
                if ab.returncode is None:
                    ab.send_signal(signal.SIGKILL)  # no hand-back: their leases expire
                await ab.wait()
            killed_at = {n: store.load_runner_state(ids[n])["bars_seen"] for n in "AB"}
            host = asyncio.ensure_future(run_host(store_url, poll=0.05, session_kwargs=LEASE))
            try:
                await until(lambda: all(_checkpointed(store, ids[n], killed_at[n] + 10) for n in "AB"), timeout=60,
                            message="both variants resumed by the host and past where they were killed")
                live.stop()
                await asyncio.wait_for(live.wait(), 20)
                await until(lambda: all(SessionState(store.get_session(ids[n])["state"]).is_final for n in "AB"),
                            timeout=30, message="the variants ended with the live session")
                result = await asyncio.wait_for(ab_follow(store, "bk", poll=0.05, n_boot=100), 30)
            finally:
                host.cancel()
                await asyncio.gather(host, return_exceptions=True)
        finally:
            await client.close()
        references = {}
        for n in "AB":  # uninterrupted runs of the same configs on the same (now final) stored bars
            config = store.get_session(ids[n])["config"]
            ref = open_session(config.replace(name=f"reference {n}"), store, poll_interval=0.05)
            assert isinstance(ref._feed, StoredBarsFeed) and ref._feed.record_for == ref.id
            assert (await asyncio.wait_for(ref.run(), 30)).value == "completed"
            references[n] = ref.id
        return live.id, ids, result, references

    with live_exchange() as lx:
        live_id, ids, result, references = asyncio.run(go(lx))
    kept = session_bars(store, live_id, "BTC/USDT").index
    for n in "AB":
        row = store.get_session(ids[n])
        assert row["state"] == "completed" and row["parent_id"] == live_id
        assert row["config"].data.beside.session == live_id
        assert store.events(ids[n])["message"].str.contains("resumed after", regex=False).any()
        seen = store.equity(ids[n])["equity"]  # one point per bar: every bar the live session stored after the start
        after = row["config"].data.beside.after
        assert seen.index.equals(kept[kept > after]) and len(seen) > 20
        ref = store.get_session(references[n])
        assert seen.equals(store.equity(references[n])["equity"])
        assert float(row["final_equity"]) == pytest.approx(float(ref["final_equity"]), rel=1e-12)
        fills, ref_fills = store.fills(ids[n])[FILL_COLUMNS], store.fills(references[n])[FILL_COLUMNS]
        assert len(fills) > 0 and fills.reset_index(drop=True).equals(ref_fills.reset_index(drop=True))
        assert session_bars(store, ids[n], "BTC/USDT").equals(session_bars(store, live_id, "BTC/USDT").loc[seen.index])
    assert result.kind == "beside" and result.session_ids == {"live": live_id, **ids}
    assert result.equity.index[0] == store.equity(ids["A"]).index[0]  # compared over the A/B window only
    assert result.equity.index[-1] <= store.equity(ids["A"]).index[-1]


def test_a_resumed_stored_bars_feed_carries_on_after_its_checkpoint_within_its_bar_budget(store):
    """The budget counts the bars the resumed session had before its checkpoint (its own stored bars)."""
    import pandas as pd

    t0 = pd.Timestamp("2024-01-10", tz="UTC")
    live = store.create_session(open_config(), state="running")
    variant = store.create_session(open_config(), state="running")
    bar = [("BTC/USDT", (t0 + pd.Timedelta(minutes=i)).to_pydatetime(), 1.0, 2.0, 0.5, 1.5, 3.0) for i in range(10)]
    append_session_bars(store, live, bar)
    append_session_bars(store, variant, bar[2:6])  # it had bars 2..5 (after bar 1, the A/B's start); checkpoint at 4
    feed = StoredBarsFeed(store, live, ["BTC/USDT"], after=t0 + pd.Timedelta(minutes=1), poll=0.01, max_bars=5,
                          record_for=variant)
    feed.start_after = (t0 + pd.Timedelta(minutes=4)).to_pydatetime()

    async def take():
        return [b["BTC/USDT"].time async for b in feed]

    got = asyncio.run(take())
    assert got == [(t0 + pd.Timedelta(minutes=i)).to_pydatetime() for i in (5, 6)]  # 3 had + 2 = the budget of 5
    assert list(session_bars(store, variant, "BTC/USDT").index) == [t0 + pd.Timedelta(minutes=i) for i in range(2, 7)]
    with pytest.raises(ValueError, match="max_bars must be at least 1"):
        StoredBarsFeed(store, live, ["BTC/USDT"], max_bars=0)


def open_config():
    from tests.kit import paper_config

    return paper_config(data={"source": "ccxt", "live": True})


def test_cli_beside_host_requests_the_variants_from_a_host_and_judges_them_within_their_bar_budget(store_url, capsys):
    """`workbench ab --beside ID --host --bars 5`: a host runs the variants on the session's stored bars (here
    a store row whose bars and equity another thread writes as they close); the follower judges them once
    they have had their 5 bars, without waiting for the session itself to end."""
    import json
    import threading

    import pandas as pd

    from tests.kit import wait_until
    from tests.test_ab_beside import stored_live_session
    from workbench.cli import main
    from workbench.store import Store

    st = Store(store_url)
    sid, close = stored_live_session(st)
    followed = threading.Event()

    def live_side() -> None:
        try:
            wait_until(lambda: len(st.list_sessions()) == 3, timeout=60)  # both variants requested
            for i in range(1, 9):
                close(i)
            followed.wait(60)  # it runs on while the A/B is judged
        finally:
            st.set_state(sid, "completed", actor="test", message="the live session ended")

    async def hosting() -> None:
        task = asyncio.ensure_future(run_host(store_url, poll=0.02, resume_orphans=False))  # the row "live" stands
        # for a session run elsewhere: this host leaves it alone
        while not followed.is_set():
            await asyncio.sleep(0.02)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    threads = [threading.Thread(target=live_side, daemon=True),
               threading.Thread(target=lambda: asyncio.run(hosting()), daemon=True)]
    for t in threads:
        t.start()
    try:
        code = main(["ab", "--beside", sid, "--host", "--bars", "5", "--variant", "", "--variant", "fast=3",
                     "--db", store_url, "--poll", "0.02", "--n-boot", "100", "--json"])
        live_state = st.get_session(sid)["state"]
    finally:
        followed.set()
        for t in threads:
            t.join(30)
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["kind"] == "beside" and not SessionState(live_state).is_final  # judged before it ended
    assert [v["name"] for v in doc["variants"]] == ["live", "A", "B"] and doc["variants"][0]["session_id"] == sid
    for v in doc["variants"][1:]:
        row = st.get_session(v["session_id"])
        assert row["state"] == "completed" and row["config"].data.beside.bars == 5
        assert store_events_say(st, v["session_id"], "claimed by host")
        t0 = st.equity(sid).index[0]  # the live session's first bar, stored before the A/B started
        assert list(st.equity(v["session_id"]).index) == [t0 + pd.Timedelta(minutes=i) for i in range(1, 6)]
    assert doc["verdict"]["periods"] == 5  # the window's 5 bars
    st.close()


def store_events_say(store, session_id: str, text: str) -> bool:
    return bool(store.events(session_id)["message"].str.contains(text, regex=False).any())
