"""A paper A/B run by `workbench host`: the variants are requested sessions; a host SIGKILLed mid-run leaves
them to the next host, which resumes each from its checkpoint, and the follower judges them as if nothing
happened."""
from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from tests.kit import paper_config, wait_until
from workbench.ab.host import ab_follow, ab_request
from workbench.engine.host import run_host
from workbench.engine.session import Session
from workbench.store import Store

START = datetime(2024, 1, 1, tzinfo=timezone.utc)
LEASE = {"lease_seconds": 1.0}  # a killed host's sessions are taken over a second later
HOST = ("import asyncio, sys\nfrom workbench.engine.host import run_host\n"
        f"asyncio.run(run_host(sys.argv[1], poll=0.05, session_kwargs={{'replay_speed': 1000.0, **{LEASE!r}}}))")


def _mid_run(store: Store, sid: str) -> bool:
    state = store.load_runner_state(sid)
    return store.get_session(sid)["state"] == "running" and state is not None and state["bars_seen"] >= 10


@pytest.mark.slow  # a real host process (~15 s with its start-up): the crash-only proof
def test_a_host_killed_mid_ab_leaves_its_variants_to_the_next_host(store_url, store):
    config = paper_config(start=START, end=START + timedelta(hours=4) - timedelta(minutes=1))  # 240 bars
    reference = Session(config, store)
    assert asyncio.run(reference.run()).value == "completed"
    label, ids = ab_request(config, {"A": {}, "B": {}}, store, label="hk")
    assert all(store.get_session(sid)["state"] == "requested" for sid in ids.values())
    host = subprocess.Popen([sys.executable, "-c", HOST, store_url], stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: host.poll() is not None or all(_mid_run(store, sid) for sid in ids.values()), timeout=120,
                   message="both variants running on the host with a checkpoint")
        assert host.poll() is None, host.communicate()[1]
        host.send_signal(signal.SIGKILL)  # no hand-back: the leases expire
        host.wait(10)
    finally:
        if host.poll() is None:
            host.kill()
    assert all(store.get_session(sid)["state"] == "running" for sid in ids.values())

    async def next_host_and_follower():  # the next host runs until the follower has seen every variant end
        host = asyncio.ensure_future(run_host(store_url, poll=0.05, session_kwargs=LEASE))
        try:
            return await asyncio.wait_for(ab_follow(store, label, poll=0.05, n_boot=200), 120)
        finally:
            host.cancel()
            await asyncio.gather(host, return_exceptions=True)

    res = asyncio.run(next_host_and_follower())
    assert res.session_ids == ids
    final = float(store.get_session(reference.id)["final_equity"])
    for sid in ids.values():
        row = store.get_session(sid)
        assert row["state"] == "completed" and float(row["final_equity"]) == pytest.approx(final, rel=1e-12)
        assert store.events(sid)["message"].str.contains("resumed after", regex=False).any()
    assert len(res.equity) == 240 and res.equity["A"].equals(res.equity["B"])
    assert res.winner is None and res.verdict.text.startswith("no significant difference")
    with pytest.raises(ValueError, match="A/B 'hk' exists already"):
        ab_request(config, [{}, {}], store, label="hk")


def test_cli_host_requests_the_variants_and_prints_the_verdict_once_a_host_ran_them(tmp_path, store_url, capsys):
    import json
    import threading

    path = tmp_path / "paper.json"
    path.write_text(paper_config(start=START, end=START + timedelta(hours=2) - timedelta(minutes=1)).to_json())
    followed = threading.Event()

    async def hosting() -> None:  # until the CLI has followed the A/B to its end, however late it requests it
        task = asyncio.ensure_future(run_host(store_url, poll=0.05))
        while not followed.is_set():
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    host = threading.Thread(target=lambda: asyncio.run(hosting()), daemon=True)
    host.start()
    from workbench.cli import main

    try:
        code = main(["ab", "--config", str(path), "--host", "--variant", "", "--variant", "fast=3", "--db",
                     store_url, "--poll", "0.05", "--n-boot", "200", "--json"])
    finally:
        followed.set()
        host.join(30)
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["kind"] == "paper" and doc["verdict"]["periods"] == 120
    st = Store(store_url)
    assert all(st.get_session(v["session_id"])["state"] == "completed" for v in doc["variants"])
    st.close()
    assert main(["ab", "--config", str(path), "--kind", "backtest", "--host", "--variant", "", "--variant", "",
                 "--db", store_url]) == 2
    assert "--host do(es) not apply to a backtest A/B" in capsys.readouterr().err
