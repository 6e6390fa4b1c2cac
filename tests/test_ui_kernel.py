"""The detail view in a real Jupyter kernel (jupyter_client + ipykernel): its refresh task runs on
the kernel's loop, the charts update while a paper session replays, and the IOPub traffic stays far
below Jupyter server's rate limits. Uses bench/live_charts.py's runner."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("jupyter_client")

BENCH = Path(__file__).resolve().parents[1] / "bench" / "live_charts.py"


def _bench():
    spec = importlib.util.spec_from_file_location("live_charts", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_detail_view_updates_live_in_a_real_kernel():
    b = _bench()
    # 1 day of bars at 30,000x real time: ~3 s of live updates
    code = b.CELL.format(with_view=True, days=1, speed=30_000.0, refresh=0.2, window=300, seconds=0, linger=1.0)
    res, msgs, texts = b.run_kernel(code, timeout=300)
    assert res["state"] == "completed" and res["bars"] == 1440
    assert res["equity_updates"] >= 2 and res["points"] == res["price_points"] == 300
    comm_msgs = sum(1 for m in msgs if m[1] == "comm_msg")
    assert comm_msgs >= res["updates"]  # every chart update went out as a comm message
    peak_msgs, peak_bytes = b.peak_rates(msgs)
    assert peak_msgs < b.MSG_LIMIT / 10 and peak_bytes < b.DATA_LIMIT / 10
    assert not any("Traceback" in t or "rate exceeded" in t for t in texts)
    # throttled: never more chart updates than refresh ticks allow
    assert res["updates"] <= 2 * (res["wall_s"] / 0.2 + 2)
