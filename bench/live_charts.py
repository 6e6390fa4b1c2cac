"""Live-chart benchmark: a paper session replaying at full speed with the detail view open, in a real
Jupyter kernel, counting the IOPub traffic a frontend would receive.

    python bench/live_charts.py                         # 365 days of 1m bars (525,600 bars), full speed
    python bench/live_charts.py --days 30 --json out.json
    python bench/live_charts.py --days 3 --speed 600 --seconds 600   # paced: 10 min wall at 600x

A kernel is started with jupyter_client (the same ipykernel JupyterLab and Voilà use). One cell
creates a SQLite store in a temp dir, a two-symbol momentum paper session over ``--days`` of sample
bars (``ReplayFeed`` at full speed, or ``--speed`` x real time) and ``workbench.ui.detail(...)``,
displays the view and awaits the session (plus ``--linger`` s so the last updates go out). A
client thread records every IOPub message (type, size, arrival time). Reported:

* chart updates/s (both charts; ``LiveChart.updates``) and IOPub ``comm_msg``/s;
* the peak IOPub message and byte rates over any 3 s window, against Jupyter server's default
  limits (``iopub_msg_rate_limit`` 1000 msg/s, ``iopub_data_rate_limit`` 1 MB/s, averaged over
  ``rate_limit_window`` 3 s): below both means no "IOPub message rate exceeded";
* kernel CPU share spent on UI: CPU seconds inside the view's refresh (``Ticker.busy``) over the
  kernel's CPU seconds for the run; and the session's wall time with vs without the view;
* kernel RSS at start (after imports, before the session) and at the end (after gc).
Targets (issue 5): memory growth < 50 MB, no IOPub rate exceeded.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MSG_LIMIT, DATA_LIMIT, WINDOW = 1000.0, 1_000_000.0, 3.0

CELL = r'''
import asyncio, gc, json, os, tempfile, time
import psutil
from IPython.display import display
from workbench.config import make_config
from workbench.data import sample_bars
from workbench.engine.feeds import ReplayFeed
from workbench.engine.session import Session
from workbench.store import Store
import workbench.ui as ui

proc = psutil.Process()
gc.collect()
rss0 = proc.memory_info().rss
samples = []

async def sample_rss():
    while True:
        samples.append(proc.memory_info().rss / 2**20)
        await asyncio.sleep(1.0)
sampler = asyncio.get_running_loop().create_task(sample_rss())
store = Store("sqlite:///" + os.path.join(tempfile.mkdtemp(), "wb.db"))
symbols = ["BTC/USDT", "ETH/USDT"]
cfg = make_config(kind="paper", strategy="momentum", params={{"window": 60, "entry_threshold": 0.004}},
                  symbols=symbols, risk={{"stop_loss": 0.01, "take_profit": 0.02}},
                  sizing={{"mode": "percent_equity", "value": 0.4}})
bars = {{s: sample_bars(s, days={days}) for s in symbols}}
first, last = bars["BTC/USDT"].index[[0, -1]]
cfg = cfg.model_copy(update={{"start": first, "end": last}})  # the detail view's price chart loads these bars
session = Session(cfg, store, feed=ReplayFeed(bars, {speed}), poll_interval=0.5)
view = ui.detail(session.id, store, session, refresh={refresh}, window={window}) if {with_view} else None
if view is not None:
    display(view.widget)
cpu0, t0 = proc.cpu_times(), time.monotonic()
session.start()
await session.wait()
t_session = time.monotonic() - t0
deadline = t0 + {seconds}
while time.monotonic() < max(deadline, t0 + t_session + {linger}):
    await asyncio.sleep(0.1)
cpu1, t1 = proc.cpu_times(), time.monotonic()
sampler.cancel()
out = {{"bars": len(next(iter(bars.values()))), "state": session.state.value, "session_s": t_session,
        "wall_s": t1 - t0, "kernel_cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)}}
if view is not None:
    out.update(updates=view.updates, equity_updates=view.equity_chart.updates, price_updates=view.price_chart.updates,
               ticks=view.ticker.count, ui_cpu_s=view.ticker.busy, points=view.equity_chart.points(0),
               price_points=view.price_chart.points(0))
    view.close()
gc.collect()
out.update(rss_start_mb=rss0 / 2**20, rss_end_mb=proc.memory_info().rss / 2**20, rss_samples_mb=samples)
print("BENCH" + json.dumps(out))
'''


WARMUP = r'''
import pandas as pd, plotly.graph_objects as go, psutil, workbench.ui
from workbench.metrics import compute_metrics, drawdown_series
_eq = pd.Series([1.0, 1.1, 1.05], index=pd.date_range("2024", periods=3, freq="1min", tz="UTC"))
compute_metrics(_eq, None, 1.0), drawdown_series(_eq, 1.0)  # numba kernels loaded once per kernel
go.FigureWidget().close()
'''


def run_kernel(code: str, timeout: float) -> tuple[dict[str, Any], list[tuple[float, str, int]], list[str]]:
    """Run ``code`` in a fresh kernel; returns the BENCH result, IOPub (time, type, bytes) and stream texts."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(ROOT))
    msgs: list[tuple[float, str, int]] = []
    texts: list[str] = []
    done = threading.Event()

    def listen() -> None:
        while not done.is_set():
            try:
                m = kc.get_iopub_msg(timeout=0.2)
            except Exception:
                continue
            size = len(json.dumps(m["content"], default=str)) + sum(len(b) for b in m.get("buffers") or [])
            msgs.append((time.monotonic(), m["msg_type"], size))
            if m["msg_type"] == "stream":
                texts.append(m["content"]["text"])
            elif m["msg_type"] == "error":
                texts.append("\n".join(m["content"]["traceback"]))
    try:
        kc.execute_interactive(WARMUP, timeout=300)  # imports and one-time JIT loads outside the measurement
        msgs.clear()
        th = threading.Thread(target=listen, daemon=True)
        th.start()
        reply = kc.execute(code, store_history=False)
        kc.get_shell_msg(timeout=timeout)
        time.sleep(0.5)
        done.set()
        th.join()
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    del reply
    text = "".join(texts)
    if "BENCH" not in text:
        raise RuntimeError(f"the benchmark cell failed:\n{text[-3000:]}")
    result = json.loads(text.split("BENCH", 1)[1].splitlines()[0])
    return result, msgs, texts


UNCOUNTED = {"status", "comm_open", "execute_input"}  # as jupyter_server's rate limiter


def peak_rates(msgs: list[tuple[float, str, int]]) -> tuple[float, float]:
    """Highest (messages/s, stream bytes/s) over any ``WINDOW``-second window, counted the way
    jupyter_server's IOPub limiter counts them (status, comm_open, execute_input exempt; only
    stream output counts as data)."""
    msgs = [(t, typ, size if typ == "stream" else 0) for t, typ, size in msgs if typ not in UNCOUNTED]
    best_n = best_b = 0.0
    j = 0
    total = 0
    for i, (t, _, size) in enumerate(msgs):
        total += size
        while msgs[j][0] < t - WINDOW:
            total -= msgs[j][2]
            j += 1
        best_n, best_b = max(best_n, (i - j + 1) / WINDOW), max(best_b, total / WINDOW)
    return best_n, best_b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=365, help="days of 1m sample bars per symbol (2 symbols)")
    ap.add_argument("--speed", type=float, default=None, help="replay speed x real time (default: full speed)")
    ap.add_argument("--seconds", type=float, default=0.0, help="keep the view open at least this long")
    ap.add_argument("--refresh", type=float, default=0.5, help="view refresh interval, s")
    ap.add_argument("--window", type=int, default=500, help="chart window, points")
    ap.add_argument("--linger", type=float, default=2.0, help="seconds after the session ends")
    ap.add_argument("--no-baseline", action="store_true", help="skip the run without the view")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    params = dict(days=a.days, speed=a.speed, refresh=a.refresh, window=a.window, seconds=a.seconds,
                  linger=a.linger)
    timeout = 3600 + a.seconds
    res, msgs, texts = run_kernel(CELL.format(with_view=True, **params), timeout)
    by_type: dict[str, int] = {}
    for _, typ, _ in msgs:
        by_type[typ] = by_type.get(typ, 0) + 1
    peak_n, peak_b = peak_rates(msgs)
    comm = [m for m in msgs if m[1] == "comm_msg"]
    span = max(res["wall_s"], 1e-9)
    res.update(comm_msgs_per_s=len(comm) / span, comm_bytes_per_s=sum(m[2] for m in comm) / span,
               comm_open_bytes=sum(m[2] for m in msgs if m[1] == "comm_open"))
    res.update(iopub_by_type=by_type, iopub_msgs=len(msgs), iopub_bytes=sum(m[2] for m in msgs),
               peak_msg_rate=peak_n, peak_byte_rate=peak_b,
               rate_exceeded=peak_n > MSG_LIMIT or peak_b > DATA_LIMIT or "rate exceeded" in "".join(texts))
    if not a.no_baseline:
        base, _, _ = run_kernel(CELL.format(with_view=False, **params), timeout)
        res["baseline"] = base
    wall = res["wall_s"]
    print(f"bars per symbol:         {res['bars']:,} ({a.days} days of 1m bars, 2 symbols), "
          f"{'full speed' if a.speed is None else f'{a.speed:g}x'}; final state {res['state']}")
    print(f"session wall time:       {res['session_s']:.1f} s with the view"
          + (f", {res['baseline']['session_s']:.1f} s without" if "baseline" in res else ""))
    print(f"chart updates:           {res['updates']} in {wall:.1f} s = {res['updates'] / wall:.2f}/s "
          f"(equity {res['equity_updates']}, price {res['price_updates']}; view ticks {res['ticks']})")
    print(f"IOPub:                   {res['iopub_msgs']} msgs, {res['iopub_bytes'] / 1e6:.2f} MB; by type {by_type}")
    print(f"  comm_msg traffic:      {res['comm_msgs_per_s']:.2f} msg/s, {res['comm_bytes_per_s'] / 1e3:.1f} kB/s; "
          f"comm_open (widget models incl. plotly's JS bundle, once) {res['comm_open_bytes'] / 1e6:.2f} MB")
    print(f"peak over {WINDOW:g} s windows:  {peak_n:.1f} msg/s (limit {MSG_LIMIT:g}), "
          f"{peak_b / 1e3:.1f} kB/s (limit {DATA_LIMIT / 1e3:g}); rate exceeded: {res['rate_exceeded']}")
    print(f"kernel CPU:              {res['kernel_cpu_s']:.1f} s, in view refresh {res['ui_cpu_s']:.2f} s "
          f"= {100 * res['ui_cpu_s'] / max(res['kernel_cpu_s'], 1e-9):.1f} % on UI "
          f"({100 * res['ui_cpu_s'] / wall:.1f} % of one core over the run)")
    print(f"kernel RSS:              {res['rss_start_mb']:.0f} MB at start, {res['rss_end_mb']:.0f} MB at end "
          f"(growth {res['rss_end_mb'] - res['rss_start_mb']:+.1f} MB; target < 50); "
          f"per second: {', '.join(f'{x:.0f}' for x in res['rss_samples_mb'][:12])}"
          + (" ..." if len(res["rss_samples_mb"]) > 12 else ""))
    live = res["rss_samples_mb"][1] if len(res["rss_samples_mb"]) > 1 else res["rss_start_mb"]
    res["rss_live_growth_mb"] = res["rss_end_mb"] - live
    print(f"  while the view is live: {live:.0f} MB 1 s in (bars loaded, view shown) -> {res['rss_end_mb']:.0f} MB "
          f"at the end = {res['rss_live_growth_mb']:+.1f} MB (includes the session's final bookkeeping)")
    if "baseline" in res:
        b = res["baseline"]
        res["view_extra_mb"] = res["rss_end_mb"] - b["rss_end_mb"]
        print(f"without the view:        RSS {b['rss_start_mb']:.0f} -> {b['rss_end_mb']:.0f} MB "
              f"(growth {b['rss_end_mb'] - b['rss_start_mb']:+.1f} MB), kernel CPU {b['kernel_cpu_s']:.1f} s; "
              f"the view's share of the end RSS: {res['view_extra_mb']:+.1f} MB")
    print(f"chart points at end:     equity {res['points']}, price {res['price_points']} (window {a.window})")
    if a.json:
        res["args"] = vars(a)
        Path(a.json).write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
