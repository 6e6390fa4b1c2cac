"""The session detail page's speed and weight (issue 16): its frame is sent before its data, the price chart
keeps only the bars it can still draw, plotly's validator table is kept for the pages' trace types only and a
dashboard kernel starts without debugpy."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

from tests.kit import until
from workbench.backtest import run_backtest
from workbench.config import make_config
from workbench.data import load_bars, sample_bars
from workbench.store import Store
from workbench.ui import pages as P

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def stored_backtest(store: Store, days: int = 3) -> str:
    cfg = make_config(strategy="momentum", symbols=["BTC/USDT"], start=T0, end=T0 + timedelta(days=days))
    return store.save_backtest(cfg, run_backtest(cfg, {"BTC/USDT": sample_bars("BTC/USDT", days=days)}))


def test_in_a_kernel_the_session_page_is_sent_before_its_data_and_the_data_follows_unasked(store):
    sid = stored_backtest(store)
    sync = P.session_page(sid, store).views["detail"]  # no running loop (a notebook cell's sync build): at once
    assert sync.equity_chart.points(0) > 100 and "wb-trades-table" in sync.trades_html.value

    async def in_kernel() -> None:
        page = P.session_page(sid, store)
        view = page.views["detail"]
        # what Voilà sends when the cell ends: the frame (header, controls, empty charts), no data yet
        assert view.equity_chart.points(0) == 0 and view.trades_html.value == "" and view._bars is None
        assert page.views["controls"].widget is not None and page.views["header"].widget is not None
        await until(lambda: view.equity_chart.points(0) > 0, timeout=20, message="equity drawn after the page")
        # the same content as the synchronous build, with nothing asked of the page
        assert view.equity_chart.points(0) == sync.equity_chart.points(0)
        assert view.price_chart.points(0) == sync.price_chart.points(0) > 0
        assert view.trades_html.value == sync.trades_html.value
        assert view.performance.value == sync.performance.value
        page.close_views()

    asyncio.run(in_kernel())
    sync.close()


def test_the_price_chart_keeps_the_bars_it_can_still_draw_and_lets_the_sample_path_go(store):
    from workbench.data import sample
    from workbench.ui.detail import DetailView

    sid = stored_backtest(store, days=5)
    view = DetailView(sid, store, refresh=60, window=300)
    assert sample._sample.cache_info().currsize == 0 and sample._minute_path.cache_info().currsize == 0
    c = view.config
    bars = load_bars(c.data, "BTC/USDT", c.start, c.end)  # what the chart loaded before keeping its part
    last = view._last_t
    assert last is not None and view._bars is not None
    upto = int(bars.index.searchsorted(last, side="right"))
    # from `window` bars before the last equity point on: what the chart shows and what a replay reaches later
    assert len(view._bars) == len(bars) - (upto - 300) < len(bars) / 2
    pd.testing.assert_series_equal(view._bars, bars["close"].iloc[upto - 300:], check_names=False,
                                   check_freq=False)
    assert list(view.price_chart.fig.data[0].y) == list(bars["close"].iloc[upto - 300:upto])  # the drawn window
    view.show_symbol("BTC/USDT")  # drawn again from what it kept
    assert view.price_chart.points(0) == 300
    view.close()


def test_a_running_sessions_price_chart_keeps_a_bounded_look_ahead_and_reads_again_past_it(store):
    from workbench.ui.detail import AHEAD, DetailView

    sid = store.create_session(make_config(kind="paper", symbols=["BTC/USDT"], start=T0, end=T0 + timedelta(days=5)))
    store.set_state(sid, "running")
    store.add_equity_points(sid, [(T0 + timedelta(minutes=m), 10_000.0) for m in range(60)])  # its first hour
    view = DetailView(sid, store, refresh=60, window=300)
    assert view._bars is not None and len(view._bars) == 300 + AHEAD  # from the start: a window, AHEAD more
    assert view._bars.index[0] == T0 and view._bars_more and view.price_chart.points(0) == 60
    later = T0 + timedelta(minutes=60 + AHEAD + 500)  # the replay went past what was kept
    store.add_equity_points(sid, [(later, 10_000.0)])
    view.refresh()
    view.price_chart.flush(force=True)  # (a page's ticker flushes at most every refresh / 2 s)
    c = view.config
    bars = load_bars(c.data, "BTC/USDT", c.start, c.end)
    upto = int(bars.index.searchsorted(later, side="right"))
    assert view._bars.index[0] == bars.index[upto - 300] and len(view._bars) == 300 + AHEAD
    assert list(view.price_chart.fig.data[0].y) == list(bars["close"].iloc[upto - 300:upto])  # the new window
    view.close()


def test_lean_validators_keep_the_pages_trace_types_and_load_the_rest_when_asked():
    from plotly import validator_cache

    from workbench.ui.charts import PAGE_TRACES, LeanValidators

    path = Path(validator_cache.__file__).parent / "validators" / "_validators.json"
    full = json.loads(path.read_text())
    lean = LeanValidators(path)
    assert lean.full is None and set(lean.kept) == {k for k in full if k.split(".", 1)[0] in PAGE_TRACES}
    assert len(lean.kept) < len(full) / 3
    for key in ("scatter.x", "layout.xaxis.tickformat", "histogram.marker", "frames", "data"):
        assert lean.get(key) == full[key], key
    assert lean.full is None  # no other table loaded for the pages' types
    assert lean.get("scatter3d.x") == full["scatter3d.x"] and lean.get("no.such") is None  # others: plotly's own


LEAN_FIGURE = """
import json, os, sys
os.environ["WORKBENCH_PLOTLY_BUNDLE"] = "1"
from plotly import validator_cache
from workbench.ui import charts
charts.warm()  # what the session page runs first
assert isinstance(validator_cache.ValidatorCache._json_cache, charts.LeanValidators)
import plotly.graph_objects as go
fig = go.Figure([go.Scatter(x=[1, 2], y=[3, 4], mode="lines+markers", line={"dash": "dot"}), go.Histogram(x=[1])],
                layout={"yaxis2": {"domain": [0, 0.3]}, "legend": {"orientation": "h"}})
lean_full = validator_cache.ValidatorCache._json_cache.full is not None
fig.add_trace(go.Scatter3d(x=[1], y=[2], z=[3]))  # a type no page draws: plotly's whole table, same figure
print(json.dumps({"fig": fig.to_plotly_json(), "full_before_3d": lean_full}, default=str))
"""


def test_a_figure_built_on_lean_validators_is_plotlys_own():
    out = subprocess.run([sys.executable, "-c", LEAN_FIGURE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.splitlines()[-1])
    assert got["full_before_3d"] is False

    import plotly.graph_objects as go

    fig = go.Figure([go.Scatter(x=[1, 2], y=[3, 4], mode="lines+markers", line={"dash": "dot"}), go.Histogram(x=[1])],
                    layout={"yaxis2": {"domain": [0, 0.3]}, "legend": {"orientation": "h"}})
    fig.add_trace(go.Scatter3d(x=[1], y=[2], z=[3]))
    assert got["fig"] == json.loads(json.dumps(fig.to_plotly_json(), default=str))


def test_a_dashboard_kernel_starts_without_debugpy_and_runs_code():
    from jupyter_client.kernelspec import KernelSpecManager

    from workbench.dashboard_kernels import LAUNCH, DashboardKernel, DashboardKernelManager

    assert DashboardKernelManager().kernel_manager_class == "workbench.dashboard_kernels.DashboardKernel"
    km = DashboardKernel(kernel_name="python3", kernel_spec_manager=KernelSpecManager())
    cmd = km.format_kernel_cmd()
    assert cmd[1:3] == ["-c", LAUNCH] and "ipykernel_launcher" not in cmd
    async def run() -> str:
        await km.start_kernel()
        client = km.client()
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=60)
            seen: list[str] = []
            reply = await client.execute_interactive(
                "import sys; print('debugpy' in sys.modules, sys.modules.get('debugpy'))", timeout=60,
                output_hook=lambda m: seen.append(m["content"].get("text", "")))
            assert reply["content"]["status"] == "ok"
            return "".join(seen)
        finally:
            client.stop_channels()
            await km.shutdown_kernel(now=True)

    assert asyncio.run(run()).split() == ["True", "None"]  # marked missing: ipykernel's debugger off, none loaded


def test_a_shared_chart_keeps_the_browsers_defaults_without_building_their_objects(monkeypatch):
    import plotly.graph_objects as go

    from workbench.ui.charts import BUNDLE_ENV, figure_widget

    def defaults_in(fig) -> tuple[object, list[str], list[str]]:
        fig._js2py_layoutDelta = {"layout_delta": {"modebar": {"orientation": "h"}, "xaxis": {"range": [0, 1]}},
                                  "layout_edit_id": fig._last_layout_edit_id}
        fig._js2py_traceDeltas = {"trace_deltas": [{"uid": fig.data[0].uid, "marker": {"color": "red"}}],
                                  "trace_edit_id": fig._last_trace_edit_id}
        assert fig.layout.xaxis.range == (0, 1)  # what the browser computed still reads as plotly's own
        return fig._layout_defaults, sorted(fig.layout._compound_props), sorted(fig.data[0]._compound_props)

    plain = defaults_in(figure_widget(go.Figure([go.Scatter(x=[1], y=[2])])))
    monkeypatch.setenv(BUNDLE_ENV, "1")
    shared = defaults_in(figure_widget(go.Figure([go.Scatter(x=[1], y=[2])])))
    assert shared[0] == plain[0]
    assert "modebar" in plain[1] and "marker" in plain[2]  # plotly's widget builds an object per default
    assert "modebar" not in shared[1] and shared[2] == []  # ours does not (no page registers on_change)
