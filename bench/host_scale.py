"""Host scale benchmark: N paper sessions (5 symbols each, 1m sample bars replayed at 60x: one bar
time per second per session) in ONE host process, for N = 1, 10, 100, 200, 300.

    python bench/host_scale.py                                # all sizes, 60 s each (+ ramp-up)
    python bench/host_scale.py --sizes 1,10,100,200 --seconds 20 --json out.json
    python bench/host_scale.py --sizes 50 --seconds 10 --tracemalloc   # what each session allocates

Each size runs in a fresh child process (so RSS is not left over from the previous size) that runs
``workbench.engine.host.run_host`` in-process on a real SQLite file, with the sessions requested
as a notebook would (``request_session``). In-process, not ``workbench host`` as a subprocess,
because bar-to-order latency needs a hook on the bar release and the broker: the feed records when
each bar was due (``workbench.engine.feeds.RELEASED_AT``, its schedule, so a late event loop counts)
and the benchmark wraps ``PaperBroker.submit`` (bar -> order) and ``Session._on_bar`` (bar -> step
done, every bar); CPU and RSS are this process's, the host's work plus a sampler waking once a second.

Per size: bar->order latency p50/p99, bar->done p50/p99, event-loop lag (a 1 s sleep's overshoot),
pace (bars processed in the window / bars due) and the worst session's backlog (``feed.due() -
feed.released``), CPU % of one core, RSS and RSS per session (above the process before the first
session) and per added session (slope from the previous size), store rows written per second
(equity, fills, orders, events), checkpoints per second and the share of wall time the loop spent
in each store call (every public ``Store`` method is timed when called on the loop's thread; calls
from a writer thread are counted, not timed), and "orphaned":
sessions whose heartbeat went stale past the host's orphan threshold at any sample, or that ended
orphaned. Then the issue's
targets (200 sessions: p99 bar->order < 50 ms at 60x, < 5 MB RSS per added session, none orphaned)
with PASS/MISS, and the same figures with sharing of the replayed bars off (``--baseline-sizes``: each
session its own copy, as before) to give the RSS ratio.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT"]
#: short windows so sessions trade within a minute of bars; rotated over the sessions
STRATEGIES = [("sma_cross", {"fast": 3, "slow": 8}), ("momentum", {"window": 5, "entry_threshold": 0.0005}),
              ("mean_reversion", {"window": 10, "entry_z": 1.0})]
POLL = 0.5  # the host's poll and the sessions' command poll (the defaults)
TARGET_N, TARGET_P99_MS, TARGET_MB_PER_SESSION = 200, 50.0, 5.0
ROW_TABLES = ("equity", "fills", "orders", "events")


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)) * 1e3, 2) if xs else None


def _count_rows(db: Path) -> int:
    import sqlite3

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return sum(con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ROW_TABLES)
    finally:
        con.close()


class _Stale:
    """Counts sessions another host would take as orphaned (stale heartbeat or lease), from its own
    store connection in a thread, so the count does not wait on the host's loop."""

    def __init__(self, url: str, stale_after: float):
        from workbench.store import Store

        self.store, self.stale_after, self.ids = Store(url), stale_after, set()

    def sample(self) -> None:
        from datetime import datetime, timezone

        from workbench.engine.exposure import is_orphaned

        now = datetime.now(timezone.utc)
        for row in self.store.list_sessions().itertuples(index=False):
            hb = row.heartbeat_at
            hb = None if hb is None or hb != hb else hb
            if row.state == "orphaned" or (hb is not None and is_orphaned(
                    row.state, hb, now, self.stale_after, lease_expires=getattr(row, "lease_expires", None))):
                self.ids.add(row.id)


def measure(n: int, seconds: float, speed: float, share: bool, trace: bool, gc_tune: bool = True) -> dict[str, Any]:
    """One size in this process: N sessions in one in-process host; the figures as a dict."""
    from workbench import execution as ex
    from workbench.config import make_config
    from workbench.engine import host as host_mod
    from workbench.engine.brokers import PaperBroker
    from workbench.engine.feeds import RELEASED_AT, SHARED
    from workbench.engine.session import Session
    from workbench.store import Store
    from workbench.strategies import create
    from workbench.strategies.indicators import warm_up as warm_up_strategies

    SHARED.enabled = share
    clock = time.perf_counter
    lat_order: list[float] = []
    lat_bar: list[float] = []
    sessions: list[Session] = []
    store_calls: dict[str, list[float]] = {}  # Store method -> [calls (any thread), seconds on the loop's]
    on = [False]

    open_session, submit, on_bar = host_mod.open_session, PaperBroker.submit, Session._on_bar
    main = threading.main_thread()

    def tracked_open(*a: Any, **k: Any) -> Session:
        s = open_session(*a, **k)
        sessions.append(s)
        return s

    def timed_submit(self: Any, order: Any, bar: Any = None, *a: Any, **k: Any) -> Any:
        rel = RELEASED_AT.get(None)
        if on[0] and rel is not None and bar is not None:
            lat_order.append(clock() - rel)
        return submit(self, order, bar, *a, **k)

    def timed_on_bar(self: Session, bars: Any) -> None:
        on_bar(self, bars)
        rel = RELEASED_AT.get(None)
        if on[0] and rel is not None:
            lat_bar.append(clock() - rel)

    def timed_store(name: str, fn: Any) -> Any:
        def call(*a: Any, **k: Any) -> Any:
            if not on[0]:
                return fn(*a, **k)
            if threading.current_thread() is not main:  # a writer thread: counted, not loop time
                store_calls.setdefault(name, [0, 0.0])[0] += 1
                return fn(*a, **k)
            t = clock()
            try:
                return fn(*a, **k)
            finally:
                c = store_calls.setdefault(name, [0, 0.0])
                c[0] += 1
                c[1] += clock() - t
        return call

    host_mod.open_session, PaperBroker.submit, Session._on_bar = tracked_open, timed_submit, timed_on_bar
    for name, fn in inspect.getmembers(Store, inspect.isfunction):  # where the loop waits on the store
        if not name.startswith("_"):
            setattr(Store, name, timed_store(name, fn))

    async def run(tmp: Path) -> dict[str, Any]:
        db = tmp / "scale.db"
        url = f"sqlite:///{db}"
        store = Store(url)
        ex.warm_up()
        for name, params in STRATEGIES:  # strategies' imports and kernels: before the baseline RSS
            create(name, params)
        warm_up_strategies()
        if gc_tune:  # as `workbench host` does
            host_mod.tune_gc()
        configs = [make_config(kind="paper", strategy=name, params=params, symbols=SYMBOLS,
                               sizing={"mode": "percent_equity", "value": 0.15},
                               risk={"stop_loss": 0.004, "take_profit": 0.006})
                   for name, params in (STRATEGIES[i % len(STRATEGIES)] for i in range(n))]
        rss0 = rss_mb()
        if trace:
            import tracemalloc

            tracemalloc.start(1)
            snap0 = tracemalloc.take_snapshot()
        for c in configs:
            host_mod.request_session(store, c)
        host = asyncio.create_task(host_mod.run_host(url, poll=POLL, session_kwargs={"replay_speed": speed}))
        t_ramp = clock()
        while not (len(sessions) == n and all(getattr(s._feed, "released", 0) >= 1 for s in sessions)):
            if host.done() or clock() - t_ramp > 300:
                raise SystemExit(f"{len(sessions)} of {n} sessions started within 300 s; host done: {host.done()}")
            await asyncio.sleep(0.2)
        ramp = clock() - t_ramp
        stale = _Stale(url, host_mod.ORPHAN_AFTER_POLLS * POLL)
        rows0 = await asyncio.to_thread(_count_rows, db)
        released0 = [s._feed.released for s in sessions]
        due0 = [s._feed.due() for s in sessions]
        on[0] = True
        t0, cpu0 = clock(), time.process_time()
        lags, rss_peak = [], rss_mb()
        stale_task: asyncio.Future[None] | None = None
        while clock() - t0 < seconds:
            before = clock()
            await asyncio.sleep(1.0)
            lags.append(clock() - before - 1.0)
            rss_peak = max(rss_peak, rss_mb())
            if stale_task is None or stale_task.done():
                stale_task = asyncio.ensure_future(asyncio.to_thread(stale.sample))
        wall, cpu = clock() - t0, time.process_time() - cpu0
        on[0] = False
        now = clock()
        behind = [s._feed.due(now) - s._feed.released for s in sessions]
        processed = sum(s._feed.released - r for s, r in zip(sessions, released0))
        due = sum(s._feed.due(now) - d for s, d in zip(sessions, due0))
        rss_end = rss_mb()
        top: list[dict[str, Any]] = []
        if trace:
            diff = tracemalloc.take_snapshot().compare_to(snap0, "lineno")
            tracemalloc.stop()
            top = [{"where": str(d.traceback[0]), "mb_per_session": round(d.size_diff / n / 2**20, 3),
                    "mb": round(d.size_diff / 2**20, 2)} for d in diff[:15]]
        if stale_task is not None:
            await stale_task
        await asyncio.to_thread(stale.sample)
        rows1 = await asyncio.to_thread(_count_rows, db)
        states: dict[str, int] = {}
        for s in sessions:
            states[s.state.value] = states.get(s.state.value, 0) + 1
        host.cancel()  # hands the sessions back (orphaned, resumable): counted above, before this
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(host, 120)
        stale.store.close()
        store.close()
        return {
            "n": n, "share": share, "speed": speed, "seconds": round(wall, 1), "ramp_s": round(ramp, 1),
            "bar_to_order_ms": {"p50": _pct(lat_order, 50), "p99": _pct(lat_order, 99), "n": len(lat_order)},
            "bar_to_done_ms": {"p50": _pct(lat_bar, 50), "p99": _pct(lat_bar, 99), "n": len(lat_bar)},
            "loop_lag_ms": {"p99": _pct(lags, 99), "max": _pct(lags, 100)},
            "pace": round(processed / due, 4) if due else None, "max_behind_bars": max(behind),
            "cpu_pct": round(100 * cpu / wall, 1), "rss_mb": round(rss_end, 1), "rss_peak_mb": round(rss_peak, 1),
            "rss_before_mb": round(rss0, 1), "mb_per_session": round((rss_end - rss0) / n, 2),
            "rows_per_s": round((rows1 - rows0) / wall, 1),
            "checkpoints_per_s": round(store_calls.get("save_checkpoint", [0, 0.0])[0] / wall, 1),
            "store_on_loop": {k: {"per_s": round(c / wall, 1), "loop_pct": round(100 * t / wall, 1)}
                              for k, (c, t) in sorted(store_calls.items(), key=lambda kv: -kv[1][1])},
            "orphaned": len(stale.ids), "states": states, "bar_block_loads": SHARED.loads,
            "load_avg": round(os.getloadavg()[0], 2), "tracemalloc_top": top,
        }

    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(run(Path(tmp)))


def _child(n: int, a: argparse.Namespace, share: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", str(n), "--seconds", str(a.seconds), "--speed", str(a.speed)]
    cmd += ["--no-share"] if not share else []
    cmd += ["--tracemalloc"] if a.tracemalloc else []
    cmd += ["--no-gc-tune"] if a.no_gc_tune else []
    print(f"... {n} sessions, bars {'shared' if share else 'one copy per session'}, {a.seconds:g} s",
          file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the run of {n} sessions failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _slopes(rows: list[dict[str, Any]]) -> None:
    """``mb_per_added``: RSS per session added since the previous (smaller) size."""
    prev = None
    for r in sorted(rows, key=lambda r: r["n"]):
        r["mb_per_added"] = (round((r["rss_mb"] - prev["rss_mb"]) / (r["n"] - prev["n"]), 2) if prev
                             else r["mb_per_session"])
        prev = r


def _store_pct(r: dict[str, Any]) -> str:
    return f"{sum(v['loop_pct'] for v in r['store_on_loop'].values()):.1f}"


def _f(v: Any, unit: str = "") -> str:
    return "-" if v is None else f"{v:g}{unit}"


def report(rows: list[dict[str, Any]], base: list[dict[str, Any]]) -> str:
    head = ("   N  pace  behind  bar->order p50/p99 ms (n)  bar->done p50/p99 ms  loop lag p99/max ms"
            "  CPU %   RSS MiB  MiB/sess  MiB/added  rows/s  ckpt/s  store % of loop  orphaned")
    lines = [f"host scale: paper sessions x 5 symbols, 1m sample bars at {rows[0]['speed']:g}x, one host process, "
             f"SQLite store (load average {rows[-1]['load_avg']})", head]
    for r in rows:
        o, d, lag = r["bar_to_order_ms"], r["bar_to_done_ms"], r["loop_lag_ms"]
        lines.append(
            f"{r['n']:>4}  {_f(r['pace']):>5} {r['max_behind_bars']:>6}   "
            f"{_f(o['p50']):>7} / {_f(o['p99']):<7} ({o['n']:>5})     {_f(d['p50']):>7} / {_f(d['p99']):<7}"
            f"    {_f(lag['p99']):>7} / {_f(lag['max']):<7}     {r['cpu_pct']:>5}  {r['rss_mb']:>8}  "
            f"{r['mb_per_session']:>8}  {r['mb_per_added']:>9}  {r['rows_per_s']:>6}  "
            f"{r['checkpoints_per_s']:>6}  {_store_pct(r):>15}  {r['orphaned']:>8}")
    for r in rows:
        top = list(r["store_on_loop"].items())[:4]
        lines.append(f"  store calls on the loop, {r['n']} sessions: " + ", ".join(
            f"{k} {v['loop_pct']} % ({v['per_s']}/s)" for k, v in top))
    at = {r["n"]: r for r in rows}
    t = at.get(TARGET_N)
    lines.append(f"targets at {TARGET_N} sessions, {rows[0]['speed']:g}x:")
    if t is None:
        lines.append(f"  (not measured: add {TARGET_N} to --sizes)")
    else:
        p99 = t["bar_to_order_ms"]["p99"]
        checks = [(f"p99 bar->order < {TARGET_P99_MS:g} ms", _f(p99, " ms"), p99 is not None and p99 < TARGET_P99_MS),
                  (f"RSS per added session < {TARGET_MB_PER_SESSION:g} MB", _f(t["mb_per_added"], " MiB"),
                   t["mb_per_added"] * 1.048576 < TARGET_MB_PER_SESSION),
                  ("no session orphaned", str(t["orphaned"]), t["orphaned"] == 0),
                  ("keeps pace (>= 99 % of due bars, backlog <= 1)", f"{_f(t['pace'])}, {t['max_behind_bars']}",
                   (t["pace"] or 0) >= 0.99 and t["max_behind_bars"] <= 1)]
        lines += [f"  {name:<48} {got:>14}   {'PASS' if ok else 'MISS'}" for name, got, ok in checks]
    for b in base:
        r = at.get(b["n"])
        if r is not None:
            lines.append(f"bars not shared (as before), {b['n']} sessions: {b['mb_per_session']} MiB per session, "
                         f"RSS {b['rss_mb']} MiB; shared: {r['mb_per_session']} MiB, RSS {r['rss_mb']} MiB "
                         f"({b['mb_per_session'] / max(r['mb_per_session'], 0.01):.1f}x less); per added "
                         f"session {b['mb_per_added']} MiB not shared, {r['mb_per_added']} MiB shared")
    for r in rows:
        if r["tracemalloc_top"]:
            lines.append(f"tracemalloc, {r['n']} sessions, allocated since before the first session (top lines):")
            lines += [f"  {x['mb']:>8} MiB  {x['mb_per_session']:>7} MiB/session  {x['where']}"
                      for x in r["tracemalloc_top"]]
    return "\n".join(lines)


def _ints(text: str, flag: str, p: argparse.ArgumentParser) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        p.error(f"{flag} takes whole numbers separated by commas, e.g. 1,10,100 (got {text!r})")
    if any(x < 1 for x in out):
        p.error(f"{flag}: every size must be at least 1 (got {text!r})")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1,10,100,200,300", help="numbers of sessions, e.g. 1,10,100,200,300")
    p.add_argument("--seconds", type=float, default=60.0, help="measured seconds per size, after ramp-up")
    p.add_argument("--speed", type=float, default=60.0, help="replay speed (60: one 1m bar per second)")
    p.add_argument("--baseline-sizes", default="1,10",
                   help="sizes also run with the bars not shared (each session its own copy); '' for none")
    p.add_argument("--no-share", action="store_true", help="run every size with the bars not shared")
    p.add_argument("--no-gc-tune", action="store_true", help="leave the collector as it is (workbench host tunes it)")
    p.add_argument("--tracemalloc", action="store_true", help="report the top allocations per session (slow)")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if not a.seconds > 0 or not a.speed > 0:
        p.error(f"--seconds and --speed must be positive (got {a.seconds:g}, {a.speed:g})")
    if a.child is not None:
        print(json.dumps(measure(a.child, a.seconds, a.speed, not a.no_share, a.tracemalloc, not a.no_gc_tune)))
        return 0
    sizes = _ints(a.sizes, "--sizes", p)
    if not sizes:
        p.error("--sizes is empty; give e.g. 1,10,100")
    rows = [_child(n, a, not a.no_share) for n in sizes]
    base = [] if a.no_share else [_child(n, a, False) for n in _ints(a.baseline_sizes, "--baseline-sizes", p)]
    _slopes(rows)
    _slopes(base)
    print(report(rows, base))
    if a.json:
        Path(a.json).write_text(json.dumps({"shared": rows, "not_shared": base}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
