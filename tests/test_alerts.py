"""Alerts (workbench.ops.alerts): rules over real store events, delivered through Apprise to a loopback
webhook (a real HTTP server on 127.0.0.1), rate limited on a fake clock, every alert an ``alert`` event."""
from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pandas as pd
import pytest

from tests.kit import FakeClock, bars_for, paper_config
from workbench.cli import main
from workbench.engine.feeds import ReplayFeed
from workbench.engine.host import request_session, run_host
from workbench.engine.session import Session
from workbench.ops import OpsConfig
from workbench.ops.alerts import (
    ENV,
    AlertConfig,
    AlertWatcher,
    apprise_notifier,
    send_test_alert,
    urls_from,
)
from workbench.store import Store


class Webhook:
    """A loopback HTTP server recording each JSON body POSTed to it; ``status`` is what it answers."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status = status
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hook.bodies.append(json.loads(raw or b"{}"))
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def titles(self) -> list[str]:
        return [b.get("title", "") for b in self.bodies]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Webhook]:
    w = Webhook()
    yield w
    w.close()


def alert_events(store: Store, session_id: str | None = None) -> pd.DataFrame:
    ev = store.events(session_id)
    return ev[ev["kind"] == "alert"].reset_index(drop=True)


def running_session(store: Store, name: str = "") -> str:
    sid = store.create_session(paper_config(name=name))
    store.set_state(sid, "running")
    return sid


def test_a_breaker_trip_of_a_real_paper_session_reaches_the_webhook_and_is_an_event(store, hook):
    cfg = paper_config(sizing={"mode": "percent_equity", "value": 0.9},
                       risk={"circuit_breaker": {"max_drawdown": 0.002, "action": "halted"}})
    watcher = AlertWatcher(store, AlertConfig((hook.url,)))
    session = Session(cfg, store, feed=ReplayFeed(bars_for(cfg), None))
    asyncio.run(session.run())
    sent = watcher.check()
    assert [(a.rule, a.session_id, ok) for a, ok in sent] == [("breaker", session.id, True)]
    assert len(hook.bodies) == 1 and "breaker" in hook.titles()[0] and session.id in hook.titles()[0]
    assert "circuit breaker tripped (drawdown)" in hook.bodies[0]["message"]
    ev = alert_events(store, session.id)
    assert len(ev) == 1 and ev["data"][0]["delivered"] is True and ev["data"][0]["rule"] == "breaker"
    trip = store.events(session.id)
    assert ev["data"][0]["event_id"] == int(trip[trip["kind"] == "circuit_breaker_tripped"]["id"].iloc[0])
    assert watcher.check() == []  # each event alerts once; its own alert event raises none


def test_rules_stale_feed_error_and_reconciliation_fire_and_history_does_not(store, hook):
    sid = running_session(store, "btc scalper")
    store.add_event(sid, "error", "before the watcher started")
    watcher = AlertWatcher(store, AlertConfig((hook.url,), min_interval=0))
    store.add_event(sid, "feed_stale", "no bar for 180 s", {"symbols": ["BTC/USDT"]}, actor="feed")
    store.add_event(sid, "error", "poll failed: boom")
    store.add_event(sid, "reconciled", "reconciled with x: no differences", {"notes": []}, actor="reconcile")
    store.add_event(sid, "reconciled", "reconciled with x: 1 differences", {"notes": ["order a"]}, actor="reconcile")
    store.add_event(sid, "order_rejected", "buy rejected by cash")  # not a rule
    rules = [a.rule for a, ok in watcher.check() if ok]
    assert rules == ["stale_feed", "error", "reconciliation"]
    assert [m for m in (b["message"] for b in hook.bodies)] == ["no bar for 180 s", "poll failed: boom",
                                                                  "reconciled with x: 1 differences"]
    assert hook.titles()[0] == f"workbench stale feed: session {sid} (btc scalper)"


def test_rate_limit_per_rule_and_session_holds_back_and_summarises(store):
    clock = FakeClock()
    got: list[tuple[str, str]] = []

    def notify(title: str, body: str) -> bool:
        got.append((title, body))
        return True

    a, b = running_session(store), running_session(store)
    w = AlertWatcher(store, AlertConfig(("json://unused",), min_interval=60), notifier=notify,
                     clock=clock.monotonic)
    store.add_event(a, "error", "e1")
    assert [x.session_id for x, _ in w.check()] == [a]
    for k in range(3):
        store.add_event(a, "error", f"held {k}")
    store.add_event(b, "error", "other session")  # another key: not held back
    store.add_event(a, "feed_stale", "stale")  # another rule: not held back
    assert [(x.rule, x.session_id) for x, _ in w.check()] == [("error", b), ("stale_feed", a)]
    clock.advance(59)
    assert w.check() == []
    clock.advance(1)
    (summary, ok), = w.check()
    assert ok and summary.rule == "error" and summary.session_id == a and "3 error alerts" in summary.body
    store.add_event(a, "error", "e2")  # the summary restarted the interval
    assert w.check() == []
    clock.advance(60)
    store.add_event(a, "error", "e3")
    (last, _), = w.check()
    assert last.body == "e3" and "(1 more error alerts held back" in got[-1][1]
    held = alert_events(store, a)["data"]
    assert [d["suppressed"] for d in held] == [0, 0, 0, 1] and all(d["delivered"] for d in held)


def test_a_failing_webhook_is_a_failed_delivery_recorded_not_raised(store):
    down = Webhook(status=500)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    try:
        sid = running_session(store)
        w = AlertWatcher(store, AlertConfig((down.url,), min_interval=0))
        store.add_event(sid, "error", "boom")
        assert [ok for _, ok in w.check()] == [False]
        assert len(down.bodies) == 1
        w2 = AlertWatcher(store, AlertConfig((f"json://127.0.0.1:{port}/x",), min_interval=0))
        store.add_event(sid, "error", "boom again")
        assert [ok for _, ok in w2.check()] == [False]

        def broken(title: str, body: str) -> bool:
            raise RuntimeError("smtp exploded")

        w3 = AlertWatcher(store, AlertConfig(("json://unused",), min_interval=0), notifier=broken)
        store.add_event(sid, "error", "third")
        assert [ok for _, ok in w3.check()] == [False]
        data = alert_events(store, sid)["data"]
        assert [d["delivered"] for d in data] == [False, False, False]
        assert "smtp exploded" in data[2]["problem"]
    finally:
        down.close()


def test_drawdown_alerts_once_per_descent_from_the_peak(store, hook):
    sid = running_session(store)
    t = pd.Timestamp("2024-01-01", tz="UTC")

    def equity(*values: float) -> None:
        nonlocal t
        rows = []
        for v in values:
            t += pd.Timedelta(minutes=1)
            rows.append({"time": t, "equity": v, "cash": v, "exposure": 0.0})
        store.add_equity_points(sid, pd.DataFrame(rows).set_index("time"))

    equity(10_000, 10_500)
    w = AlertWatcher(store, AlertConfig((hook.url,), min_interval=0, drawdown=0.05))
    assert w.check() == []
    equity(10_100, 9_900)  # 5.7% below the 10,500 peak (from before the watcher started)
    (a, ok), = w.check()
    assert ok and a.rule == "drawdown" and a.data["peak"] == 10_500
    assert a.data["drawdown"] == pytest.approx(1 - 9_900 / 10_500)
    equity(9_800)
    assert w.check() == []  # still the same descent
    equity(10_400)  # back above the threshold (as of a check) re-arms the rule
    assert w.check() == []
    equity(9_000)
    assert [x.rule for x, _ in w.check()] == ["drawdown"]


def test_every_fill_is_optional(store, hook):
    from workbench.domain import Fill, Side

    sid = running_session(store)
    quiet = AlertWatcher(store, AlertConfig((hook.url,), min_interval=0))
    loud = AlertWatcher(store, AlertConfig((hook.url,), min_interval=0, fills=True))
    done = store.create_session(paper_config(), state="completed")
    now = pd.Timestamp.now(tz="UTC")
    store.add_fill(done, Fill("c0", "BTC/USDT", Side.BUY, 0.1, 42_000.0, 1.0, 0.0, now, "f0"))  # not watched
    store.add_fill(sid, Fill("c1", "BTC/USDT", Side.BUY, 0.5, 42_000.0, 1.0, 0.0, now, "f1"))
    assert quiet.check() == []
    (a, ok), = loud.check()
    assert ok and a.rule == "fill" and hook.bodies[-1]["message"] == "buy 0.5 BTC/USDT at 42000"


def test_test_alert_from_python_and_the_cli(store, store_url, hook, capsys, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert send_test_alert([hook.url], store) is True
    assert hook.titles() == ["workbench test alert"]
    ev = alert_events(store)
    assert ev["session_id"].isna().all() and ev["data"][0]["rule"] == "test" and ev["data"][0]["delivered"]
    assert main(["alerts", "test", "--alert", hook.url, "--db", store_url]) == 0
    assert "delivered" in capsys.readouterr().out and len(hook.bodies) == 2
    monkeypatch.setenv(ENV, hook.url)
    assert send_test_alert(store=store) is True and len(hook.bodies) == 3  # the button: the host's env
    monkeypatch.delenv(ENV)
    assert main(["alerts", "test", "--db", store_url]) == 2  # no URL anywhere: says how to give one
    assert "--alert URL" in capsys.readouterr().err


def test_the_consoles_test_alert_button_sends_through_the_configured_urls(store, hook):
    """The header's "Test alert": through $WORKBENCH_ALERTS (what the host reads too), delivered or not
    shown beside it, recorded as an event, and never listed among the header's alerts."""
    from workbench.ops.alerts import TEST_RULE
    from workbench.ui import console

    assert console.TEST_RULE == TEST_RULE  # the header's copy of the rule name (it imports no Apprise)
    header = console.ConsoleHeader(store, refresh=60, environ={ENV: hook.url})
    try:
        test = header.alert_test
        test.button.click()
        assert test.result is True and hook.titles() == ["workbench test alert"]
        assert "test alert delivered to json://…" in test.status.value and not test.button.disabled
        ev = alert_events(store)
        assert list(ev["actor"]) == ["dashboard"] and ev["data"][0]["delivered"] is True
        header.refresh()
        assert header.summary.alerts == [] and "no alerts" in header.html.value
    finally:
        header.close()
    down = Webhook(status=500)
    try:
        test = console.AlertTest(store, {ENV: down.url})
        test.button.click()
        assert test.result is False and len(down.bodies) == 1
        assert "test alert NOT delivered to json://…" in test.status.value
        assert alert_events(store)["data"].iloc[-1]["delivered"] is False
    finally:
        down.close()
    test = console.AlertTest(store, {})
    test.button.click()
    assert test.result is None and f"no alert URL: set {ENV}" in test.status.value


def test_bad_configuration_says_what_to_fix(monkeypatch):
    with pytest.raises(ValueError, match="at least one Apprise URL"):
        AlertConfig(())
    with pytest.raises(ValueError, match="does not accept the alert URL nosuchscheme://"):
        apprise_notifier(["nosuchscheme://secret-token@x"])
    with pytest.raises(ValueError, match="fraction between 0 and 1"):
        AlertConfig(("json://x",), drawdown=5)
    with pytest.raises(ValueError, match="unknown alert rules"):
        AlertConfig(("json://x",), rules=frozenset({"breaker", "moon"}))
    assert urls_from([], {ENV: "json://a/1, json://b/2"}) == ("json://a/1", "json://b/2")
    assert urls_from(["json://c"], {ENV: "json://a"}) == ("json://c",)


@pytest.mark.parametrize("up", [True, False], ids=["webhook up", "webhook down"])
def test_the_host_runs_the_watcher_and_alerts_a_breaker_trip(store_url, hook, up):
    """`workbench host --alert URL`: a requested paper session trips its breaker on the host; the alert
    arrives (at the latest in the host's last check as it stops). A webhook that is down breaks nothing:
    the session ends as it would have, the alert is recorded as not delivered."""
    cfg = paper_config(sizing={"mode": "percent_equity", "value": 0.9}, start="2024-01-01", end="2024-01-02",
                       risk={"circuit_breaker": {"max_drawdown": 0.002, "action": "halted"}})
    with Store(store_url) as st:
        sid = request_session(st, cfg)
    if not up:
        hook.status = 503
    ops = OpsConfig(alerts=AlertConfig((hook.url,)), alert_poll=0.05)
    ran = asyncio.run(run_host(store_url, poll=0.05, stop_after=0.5, ops=ops))
    assert ran == [sid]
    assert [t for t in hook.titles() if "breaker" in t] == [f"workbench breaker: session {sid}"]
    with Store(store_url) as st:
        assert st.get_session(sid)["state"] == "completed"
        assert [d["delivered"] for d in alert_events(st, sid)["data"]] == [up]
