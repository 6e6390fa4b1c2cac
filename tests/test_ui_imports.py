"""A dashboard kernel imports only what it shows: each page module and page, built in a fresh interpreter
on a real store after the setup ``workbench up``'s kernels run, must not load the trading stack (vectorbt,
ccxt) nor the metrics kernel's numba, nor pyarrow and nbformat; the metrics it shows come from the one
kernel source, interpreted when numba is not loaded."""
from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from workbench.dashboard_kernels import KERNEL_SETUP
from workbench.serve import seed_store

HEAVY = ("vectorbt", "ccxt", "dask")
PROBE = """
import json, os, sys
for line in json.loads(sys.argv[2]):  # what workbench up's kernels run first, before any import of workbench
    exec(line)
import workbench.ui.pages as P
page = sys.argv[1]
if page == "session":
    from workbench.store import Store
    os.environ["QUERY_STRING"] = "id=" + str(Store().history()["id"].iloc[0])
if page != "module":
    built = getattr(P, page + "_page")()
    built.close_views()
    if page == "session":  # the price chart got its bars
        detail = built.views["detail"]
        assert detail._bars is not None and len(detail._bars) and not detail._bars_error, detail._bars_error
HEAVY = {"vectorbt", "ccxt", "dask", "numba", "scipy", "alembic", "pyarrow", "nbformat", "jsonschema"}
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in HEAVY and sys.modules[m] is not None
                        or m in {"workbench.metrics.kernel", "workbench.backtest.runner"})))
"""


@functools.cache
def loaded(page: str, home: str) -> set[str]:
    """The heavy modules loaded after building ``page`` in a fresh interpreter that ran the setup
    ``workbench up``'s kernels run first (:data:`workbench.dashboard_kernels.KERNEL_SETUP`)."""
    env = {**os.environ, "WORKBENCH_HOME": home}
    env.pop("QUERY_STRING", None)
    out = subprocess.run([sys.executable, "-c", PROBE, page, json.dumps(KERNEL_SETUP)], env=env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    return {m.split(".")[0] if not m.startswith("workbench") else m for m in json.loads(out.stdout.splitlines()[-1])}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> str:
    where = tmp_path_factory.mktemp("wbhome")
    env_before = os.environ.get("WORKBENCH_HOME")
    os.environ["WORKBENCH_HOME"] = str(where)
    try:
        seed_store()  # one demo backtest: the session page shows it
    finally:
        if env_before is None:
            os.environ.pop("WORKBENCH_HOME", None)
        else:
            os.environ["WORKBENCH_HOME"] = env_before
    return str(where)


@pytest.mark.parametrize("page", ["module", "sessions", "session", "risk", "history"])
def test_a_page_does_not_load_the_trading_stack(page: str, home: str) -> None:
    mods = loaded(page, home)
    assert not mods & set(HEAVY), f"{page}: {sorted(mods & set(HEAVY))} loaded"
    assert "workbench.backtest.runner" not in mods
    assert "workbench.metrics.kernel" not in mods  # the numba-compiled metrics kernel


@pytest.mark.parametrize("page", ["sessions", "session", "risk", "history"])
def test_a_page_does_not_load_numba(page: str, home: str) -> None:
    """numba (~95 MB, and scipy with it) stays out of a dashboard kernel: the few fills and metrics a page
    books and computes run the numba modules' definitions interpreted (workbench.jit)."""
    assert not loaded(page, home) & {"numba", "scipy"}


def test_a_page_on_a_current_store_does_not_load_alembic(home: str) -> None:
    """Opening a store whose schema is current reads its version and does not import Alembic."""
    assert "alembic" not in loaded("session", home)


@pytest.mark.parametrize("page", ["sessions", "session", "risk", "history"])
def test_a_dashboard_kernel_goes_without_pyarrow_and_nbformat(page: str, home: str) -> None:
    """In ``workbench up``'s kernels pandas uses its Python string storage (pyarrow +30 MB) and plotly goes
    without nbformat and jsonschema (+15 MB): the session page still draws its price chart from the bars."""
    mods = loaded(page, home)
    assert not mods & {"pyarrow", "nbformat", "jsonschema"}, sorted(mods)


def test_a_kernel_without_pyarrow_in_pandas_still_reads_the_parquet_cache(tmp_path) -> None:
    """pyarrow stays importable after the kernel setup: cached bars read back as a normal process reads them."""
    probe = f"""
import json, sys
for line in json.loads(sys.argv[1]):
    exec(line)
import pandas as pd
assert 'pyarrow' not in sys.modules and pd.Series(['a']).dtype.storage == 'python'
from workbench.data import BarCache, sample_bars
bars = sample_bars('BTC/USDT', days=1)
cache = BarCache({str(tmp_path)!r})
cache.write('binance', 'BTC/USDT', '1m', bars)
back = cache.read('binance', 'BTC/USDT', '1m')
pd.testing.assert_frame_equal(back, bars, check_freq=False)
print(len(back), cache.coverage('binance', 'BTC/USDT', '1m'))
"""
    out = subprocess.run([sys.executable, "-c", probe, json.dumps(KERNEL_SETUP)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("1440 ")


def test_metrics_without_numba_are_the_kernels_numbers() -> None:
    """The interpreted kernel (what a dashboard runs) gives the compiled kernel's numbers to the last bit."""
    from workbench.metrics import interpreted_kernel, metrics_from_arrays, metrics_kernel
    from workbench.metrics.kernel import metrics_nb

    rng = np.random.default_rng(7)
    equity = 1000.0 + np.cumsum(rng.normal(0, 2, 3000))
    start, end = np.array([10, 500, 2900]), np.array([40, 900, 3000])
    pnl, ret = np.array([5.0, -3.0, 1.5]), np.array([0.01, -0.004, 0.002])
    dur, closed = np.array([3e10, 2.4e11, np.nan]), np.array([True, True, False])
    args = (equity, 1000.0, 525600.0, start, end, pnl, ret, dur, closed, np.empty((3, len(equity))))
    compiled, interpreted = metrics_nb(*args), interpreted_kernel().metrics_nb(*args)
    assert interpreted_kernel() is not sys.modules["workbench.metrics.kernel"]
    assert metrics_kernel() is sys.modules["workbench.metrics.kernel"]  # numba is loaded here: the compiled one
    assert [math.isnan(x) for x in compiled] == [math.isnan(x) for x in interpreted]
    assert np.array_equal(compiled[~np.isnan(compiled)], interpreted[~np.isnan(interpreted)])
    assert metrics_from_arrays(equity, 1000.0, 525600.0, start, end, pnl, ret, dur, closed)["trade_count"] == 2
    times = pd.date_range("2024-01-01", periods=5, freq="5min")
    assert interpreted_kernel()._step_range_nb(times.as_unit("ns").asi8) == (300_000_000_000, 300_000_000_000)


def test_a_ledger_without_numba_books_the_compiled_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dashboard replays a session's stored fills with the interpreted booking kernels: the same cash,
    positions and trades as the compiled ones, to the last bit."""
    from datetime import datetime, timedelta, timezone

    from workbench import jit
    from workbench.domain import Fill, Side
    from workbench.execution import ledger
    from workbench.execution import nb as compiled_nb

    assert ledger._nb() is compiled_nb  # numba is loaded here
    rng = np.random.default_rng(3)
    t0 = datetime(2024, 3, 10, tzinfo=timezone.utc)
    fills = []
    for i in range(60):
        side = Side.BUY if i % 3 != 2 else Side.SELL
        qty = float(rng.uniform(0.1, 1.0)) if side is Side.BUY else 0.05 * (i % 5 + 1)
        fills.append(Fill(f"c{i}", "BTC/USDT" if i % 2 else "ETH/USDT", side, qty, float(rng.uniform(90, 110)),
                          float(rng.uniform(0, 0.1)), 0.01, t0 + timedelta(minutes=i), reason="signal"))

    def book() -> tuple[float, dict[str, tuple[float, float]], list[float]]:
        pf = ledger.Portfolio(10_000.0)
        for f in fills:
            held = pf.positions.get(f.symbol)
            if f.side is Side.SELL and (held is None or held.quantity < f.quantity):
                continue
            pf.apply_fill(f)
        return pf.cash, {s: (p.quantity, p.avg_price) for s, p in pf.positions.items()}, [t["pnl"] for t in pf.trades]

    compiled = book()
    monkeypatch.setattr(ledger, "_nb", lambda: jit.interpreted("workbench.execution.nb"))
    interpreted = book()
    assert jit.interpreted("workbench.execution.nb") is not sys.modules["workbench.execution.nb"]
    assert len(compiled[2]) > 5
    assert interpreted == compiled


def test_a_preheated_page_gets_its_request_without_importing_voila(monkeypatch: pytest.MonkeyPatch) -> None:
    """``pages.wait_for_request`` speaks Voilà's ``voila/query/<kernel id>`` websocket (Voilà's own helper
    imports Jupyter Server, nbformat and jsonschema into the kernel): the request's details land in the
    environment, and ``query_id`` reads the id from them."""
    import asyncio
    import threading

    import websockets

    from workbench.ui import pages

    paths: list[str] = []
    ready, stop = threading.Event(), threading.Event()
    port: list[int] = []

    async def handler(ws: websockets.ServerConnection) -> None:
        paths.append(ws.request.path if ws.request else "")
        await ws.send(json.dumps({"QUERY_STRING": "id=abc123&x=1", "PATH_INFO": "/voila/render/session.ipynb"}))

    def serve() -> None:
        async def main() -> None:
            async with websockets.serve(handler, "127.0.0.1", 0) as server:
                port.append(server.sockets[0].getsockname()[1])
                ready.set()
                while not stop.is_set():
                    await asyncio.sleep(0.02)
        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    for k, v in {"VOILA_PREHEAT": "True", "VOILA_APP_PORT": str(port[0]), "VOILA_SERVER_URL": "/base/",
                 "VOILA_KERNEL_ID": "k-1", "QUERY_STRING": "", "PATH_INFO": ""}.items():  # all undone after
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("VOILA_WS_BASE_URL", raising=False)
    try:
        assert pages.query_id() == "abc123"
    finally:
        stop.set()
        thread.join(5)
    assert paths == ["/base/voila/query/k-1"]
    assert os.environ["PATH_INFO"] == "/voila/render/session.ipynb" and os.environ["VOILA_PREHEAT"] == "False"
    assert pages.query_id() == "abc123"  # asked again: no second wait


def test_a_dashboard_chart_keeps_its_data_and_only_its_trace_types_template(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``workbench up`` a chart's template keeps the defaults of its own trace types (plotly's default
    names ~50, each validated by the widget), and numpy data arrive whole (``Figure.to_dict`` would have
    made them base64 dicts the widget reads as two-key sequences: the trade review drew 2 points, not 523)."""
    import plotly.graph_objects as go
    import plotly.io as pio

    from workbench.ui.charts import BUNDLE_ENV, figure_widget

    monkeypatch.setenv(BUNDLE_ENV, "1")
    fig = go.Figure([go.Scatter(x=np.arange(150), y=np.linspace(0, 1, 150), name="wins")], layout={"width": 520})
    widget = figure_widget(fig)
    try:
        assert widget._esm != go.FigureWidget._esm  # the shared-bundle class
        assert [len(t.x) for t in widget.data] == [150] and list(widget.data[0].y[:2]) == [0.0, 1 / 149]
        assert widget.layout.width == 520
        template = widget.layout.template
        assert sorted(template.data.to_plotly_json()) == ["scatter"]
        assert template.layout.to_plotly_json() == pio.templates["plotly"].layout.to_plotly_json()  # same look
    finally:
        widget.close()
