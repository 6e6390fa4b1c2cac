"""The Prometheus endpoint (workbench.ops.metrics): scraped over HTTP, parsed with prometheus-client's
own parser, its values equal to the store's; served by ``workbench host --metrics-port``; the sample
Grafana dashboard uses only metrics the exporter has."""
from __future__ import annotations

import asyncio
import json
import re
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.kit import bars_for, paper_config
from workbench.cli import main
from workbench.domain import SessionState
from workbench.engine.feeds import ReplayFeed
from workbench.engine.host import run_host
from workbench.engine.risk import TradingState
from workbench.engine.session import Session
from workbench.ops import OpsConfig
from workbench.ops.metrics import BREAKER_STATES, LATENCY_BUCKETS, MetricsServer, metric_names
from workbench.store import Store

DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "grafana-dashboard.json"


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """sample name -> [(labels, value)] of one scrape."""
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            out.setdefault(smp.name, []).append((smp.labels, smp.value))
    return out


def value(samples: dict, metric: str, **labels: str) -> float:
    got = [v for lab, v in samples.get(metric, []) if all(lab.get(k) == x for k, x in labels.items())]
    assert len(got) == 1, f"{metric}{labels}: {got}"
    return got[0]


@pytest.fixture
def tripped(store: Store) -> str:
    """A real paper session that traded and tripped its breaker to halted, looked at as if mid-run."""
    cfg = paper_config(sizing={"mode": "percent_equity", "value": 0.9},
                       risk={"circuit_breaker": {"max_drawdown": 0.002, "action": "halted"}})
    session = Session(cfg, store, feed=ReplayFeed(bars_for(cfg), None))
    asyncio.run(session.run())
    store.set_state(session.id, SessionState.RUNNING)
    store.heartbeat(session.id, "test:1")
    return session.id


@pytest.fixture
def server(store: Store) -> Iterator[MetricsServer]:
    srv = MetricsServer(store, 0)
    yield srv
    srv.stop()


def test_the_scrape_equals_the_store(store, tripped, server):
    paused = store.create_session(paper_config(name="quiet"), state=SessionState.PAUSED)
    for k in range(3):
        store.add_event(paused, "order_rejected", f"buy rejected by cash #{k}", {"rule": "cash"})
    store.create_session(paper_config(), state=SessionState.COMPLETED)  # final: counted, not detailed
    m = scrape(server.url)
    sid = tripped
    eq = store.equity(sid).iloc[-1]
    initial = store.get_session(sid)["initial_balance"]
    assert value(m, "workbench_session_equity", session_id=sid, currency="USDT") == pytest.approx(eq["equity"])
    assert value(m, "workbench_session_pnl", session_id=sid) == pytest.approx(eq["equity"] - initial)
    assert value(m, "workbench_session_cash", session_id=sid) == pytest.approx(eq["cash"])
    assert value(m, "workbench_session_exposure", session_id=sid) == pytest.approx(eq["exposure"])
    orders, fills = len(store.orders(sid)), len(store.fills(sid))
    assert orders > 0 and fills > 0
    assert value(m, "workbench_session_orders_total", session_id=sid) == orders
    assert value(m, "workbench_session_fills_total", session_id=sid) == fills
    assert value(m, "workbench_session_rejections_total", session_id=sid) == 0
    assert value(m, "workbench_session_rejections_total", session_id=paused) == 3
    assert {lab["state"]: v for lab, v in m["workbench_session_breaker"] if lab["session_id"] == sid} == {
        "running": 0, "reducing": 0, "halted": 1}
    assert {lab["state"] for lab, v in m["workbench_session_breaker"] if lab["session_id"] == paused and v} == {
        "running"}
    states = {lab["state"]: v for lab, v in m["workbench_session_state"] if lab["session_id"] == sid}
    assert states["running"] == 1 and sum(states.values()) == 1 and set(states) == {s.value for s in SessionState}
    assert value(m, "workbench_session_state", session_id=paused, state="paused", name="quiet") == 1
    assert 0 <= value(m, "workbench_session_heartbeat_age_seconds", session_id=sid) < 60
    assert value(m, "workbench_sessions", kind="paper", state="completed") == 1
    assert value(m, "workbench_sessions", kind="paper", state="running") == 1
    assert {lab["session_id"] for lab, _ in m["workbench_session_state"]} == {sid, paused}
    # latency: from each fill's order to the fill, in the histogram's buckets
    f, o = store.fills(sid), store.orders(sid).set_index("client_id")
    lat = [(row.time - o.loc[row.client_id, "created_at"]).total_seconds() for row in f.itertuples()]
    assert value(m, "workbench_session_fill_latency_seconds_count", session_id=sid) == fills
    assert value(m, "workbench_session_fill_latency_seconds_sum", session_id=sid) == pytest.approx(sum(lat))
    for b in LATENCY_BUCKETS:
        assert value(m, "workbench_session_fill_latency_seconds_bucket", session_id=sid, le=str(b)) == sum(
            x <= b for x in lat)
    assert value(m, "process_resident_memory_bytes") > 0 and "process_cpu_seconds_total" in m


def test_every_exported_name_is_scraped_and_breaker_states_are_the_risk_engines(store, tripped, server):
    assert set(BREAKER_STATES) == {s.value for s in TradingState}
    assert metric_names() <= set(scrape(server.url))


def test_the_host_serves_metrics_on_the_port_asked(store_url):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/metrics"
    with Store(store_url) as st:
        st.create_session(paper_config(), state=SessionState.COMPLETED)

    async def go() -> dict:
        host = asyncio.create_task(run_host(store_url, poll=0.05, stop_after=3.0, ops=OpsConfig(metrics_port=port)))
        for _ in range(200):
            try:
                return await asyncio.to_thread(scrape, url)
            except OSError:
                await asyncio.sleep(0.02)
            finally:
                if host.done():
                    host.result()
        raise AssertionError(f"nothing served at {url}")

    async def run() -> dict:
        try:
            return await go()
        finally:
            for t in asyncio.all_tasks() - {asyncio.current_task()}:
                await t

    samples = asyncio.run(run())
    assert value(samples, "workbench_sessions", kind="paper", state="completed") == 1
    assert "process_resident_memory_bytes" in samples
    with pytest.raises(OSError):  # the host stopped: nothing listens any more
        scrape(url)


def test_a_busy_port_and_a_bad_one_say_what_to_do(store, server, capsys, monkeypatch):
    monkeypatch.delenv("WORKBENCH_ALERTS", raising=False)
    with pytest.raises(OSError, match="cannot serve metrics on 127.0.0.1:.*pick a free port"):
        MetricsServer(store, server.port)
    assert main(["host", "--metrics-port", "70000", "--stop-after", "0"]) == 2
    assert "--metrics-port must be between 1 and 65535" in capsys.readouterr().err
    assert main(["host", "--alert-fills", "--stop-after", "0"]) == 2
    assert "need somewhere to send alerts" in capsys.readouterr().err


def test_the_grafana_dashboard_uses_only_exported_metrics():
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    used = {n for e in exprs for n in re.findall(r"\bworkbench_[a-z_]+", e)}
    assert used and used <= metric_names(), sorted(used - metric_names())
    titles = " ".join(p["title"].lower() for p in board["panels"])
    for word in ("equity", "p&l", "exposure", "state", "rejections", "breaker"):
        assert word in titles
    assert pd.Series([p["id"] for p in board["panels"]]).is_unique


def test_money_gauges_carry_each_sessions_base_currency():
    # a BTC-based session's equity must not be summed with USDT sessions' by a dashboard: the label tells them apart
    from workbench.config import make_config
    from workbench.ops.metrics import _currency

    assert _currency(make_config(symbols=["BTC/USDT"]).to_json()) == "USDT"
    assert _currency(make_config(symbols=["ETH/BTC"]).to_json()) == "BTC"
    assert _currency(make_config(symbols=["ETH/BTC"], base_currency="USDT").to_json()) == "USDT"
    assert _currency(make_config(symbols=["BTC/USDT:USDT"]).to_json()) == "USDT"
    assert _currency("{not json") == "" and _currency(None) == ""
