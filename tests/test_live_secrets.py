"""A canary API key on an exchange that takes the key in the URL (so every ccxt error text carries it)
and fails with 500s and timeouts: the key reaches none of the database file and its WAL, the events,
the stored tracebacks, the session's error, report output, nor the process's stdout/stderr."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.exchange.server import LoopbackExchange
from workbench.secrets import Credentials, redact
from workbench.store import Store

pytestmark = pytest.mark.live_battery

KEY, SECRET = "CANARYKEYu1Rl9d4c7b2a", "CANARYSECRETu1Rl3e8f5a1d"

RUNNER = """
import asyncio, logging, os, sys, traceback
from tests.exchange.faults import key_in_url_client
from tests.exchange.fixtures import async_client
from tests.live_kit import ARMED, FAST, feed_for, live_config
from workbench.engine import open_session
from workbench.retry import RetryPolicy
from workbench.secrets import load_credentials
from workbench.store import Store

store_url, exchange_url = sys.argv[1], sys.argv[2]
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)  # ccxt and aiohttp log requests too

async def main():
    creds = load_credentials("binance", "main", use_keyring=False)
    client = key_in_url_client(async_client(exchange_url, **creds.ccxt_config(), timeout=300, verbose=True))
    config = live_config()
    s = open_session(config, Store(store_url), exchange=client, arming=ARMED, feed=feed_for(client, config),
                     **{**FAST, "broker_policy": RetryPolicy(retries=2, base=0.01, cap=0.02)})
    s.start()
    await asyncio.wait_for(s.wait(), 20)
    await client.close()
    print("SESSION", s.id, s.state.value, flush=True)
    print("raw error:", s.error, flush=True)  # the exception's own text, unredacted in memory
    try:
        raise RuntimeError(s.error)
    except RuntimeError:
        traceback.print_exc()

asyncio.run(main())
sys.stdout.flush(); sys.stderr.flush()
os._exit(0)  # no clean close: the WAL stays as the runner left it
"""


def test_canary_key_in_the_url_reaches_no_store_bytes_event_traceback_or_process_output(tmp_path):
    db = tmp_path / "canary.db"
    url = f"sqlite:///{db}"
    Store(url).close()  # created (and migrated) before the runner starts
    with LoopbackExchange(symbols=("BTC/USDT",), days=30, clock="2024-01-10", keys={KEY: SECRET}) as lx:
        lx.key_in_url = True
        lx.delay_next(2, 0.6, path="/api/v3/account")  # two client timeouts (300 ms) ...
        lx.fail_next(50, 500, path="/api/v3/account")  # ... then 500s until the start gives up
        env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("WORKBENCH_")}
        env.update(WORKBENCH_BINANCE_MAIN_API_KEY=KEY, WORKBENCH_BINANCE_MAIN_SECRET=SECRET)
        proc = subprocess.run([sys.executable, "-c", RUNNER, url, lx.url], capture_output=True, text=True,
                              cwd=str(Path(__file__).parents[1]), env=env, timeout=60)
        sent = [r.query for r in lx.requests("/api/v3/account")]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sent and all(q.get("apiKey") == KEY for q in sent)  # the key really was in every signed URL
    _, sid, state = next(line for line in proc.stdout.splitlines() if line.startswith("SESSION")).split()
    assert state == "failed"
    # the process's output: the raw error, ccxt's verbose request lines, the logs and a traceback
    for text in (proc.stdout, proc.stderr):
        assert KEY not in text and SECRET not in text
    assert "apiKey=***" in proc.stdout and "Traceback" in proc.stderr and "apiKey=***" in proc.stderr
    # the store: every byte of the database and its WAL, and what it answers
    blobs = [p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("canary.db")]
    assert any(p.name.endswith("-wal") for p in tmp_path.iterdir())
    for blob in blobs:
        assert KEY.encode() not in blob and SECRET.encode() not in blob
    store = Store(url)
    try:
        events = store.events(sid)
        row = store.get_session(sid)
    finally:
        store.close()
    errors = events[events["kind"] == "error"]
    tracebacks = [d["traceback"] for d in errors["data"] if d and "traceback" in d]
    assert tracebacks and all("apiKey=***" in tb for tb in tracebacks)  # the text arrived, redacted
    assert "apiKey=***" in row["error"] and "500" in row["error"]
    everything = json.dumps(events.astype(str).to_dict("records")) + str(row)
    assert KEY not in everything and SECRET not in everything


def test_report_output_and_stored_text_are_redacted_for_a_key_in_no_environment_variable(tmp_path):
    """A key loaded from the keyring is in no environment variable: once loaded it is redacted anyway,
    by the same rule the store, the logs, the reports (provenance.scrub) and the dashboards' messages use."""
    from workbench.reports.provenance import scrub

    key = "KEYRINGONLYq8w7e6r5t4"
    text = f"binance GET http://x/api/v3/account?apiKey={key}&signature=abc 500"
    assert redact(text) == text  # not known yet
    Credentials("binance", "spare", key, "KEYRINGONLYsecret9z8x7")
    assert scrub(text) == redact(text) == "binance GET http://x/api/v3/account?apiKey=***&signature=abc 500"
    import io
    import logging

    out = io.StringIO()
    logger = logging.getLogger("test_live_secrets")
    logger.addHandler(handler := logging.StreamHandler(out))
    try:
        raise RuntimeError(text)
    except RuntimeError:
        logger.exception("the call failed")  # a logged traceback carries the exception's text
    finally:
        logger.removeHandler(handler)
    assert "Traceback" in out.getvalue() and "apiKey=***" in out.getvalue() and key not in out.getvalue()
    from workbench.ui.common import message  # what the dashboards show of an error

    assert key not in message(f"refresh failed: {text}", "error") and "apiKey=***" in message(text)
    store = Store(f"sqlite:///{tmp_path / 'k.db'}")
    try:
        store.add_event(None, "error", text, {"traceback": text})
        ev = store.events().iloc[-1]
        assert key not in ev["message"] and key not in json.dumps(ev["data"])
    finally:
        store.close()
