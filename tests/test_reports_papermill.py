"""Real papermill runs of the report template (4 notebook executions in all: a kernel start and the
backtest each, ~5-15 s apiece), on a few days of the bundled sample data."""
from __future__ import annotations

import json
import re

import pytest
from plotly.offline import get_plotlyjs

from workbench.reports import ReportError, run_batch, run_report

pytestmark = pytest.mark.slow
CANARY = "canary123"
SMALL = {"start": "2024-01-01", "end": "2024-01-04"}


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_TEST_API_SECRET", CANARY)  # the kernel inherits it; the report must not show it
        return run_report({"strategy": "momentum", "symbols": ["BTC/USDT", "ETH/USDT"], **SMALL}, out, name="good")


def test_report_writes_notebook_and_self_contained_html(good):
    assert good.notebook_path.is_file() and good.html_path.is_file()
    html = good.html_path.read_text(encoding="utf-8")
    for text in ("Sharpe Ratio", "Max Drawdown", "Monthly returns", "Holding periods",
                 "Slippage and commission review", "Strategy vs buy-and-hold", "Data quality per symbol",
                 "Provenance", "data sha256: BTC/USDT", "version: workbench"):
        assert text in html, text
    assert "window.Plotly = Plotly" in html and html.count("Plotly.newPlot(") >= 5
    assert html.count(get_plotlyjs()[:2000]) == 1  # one copy of the plotly.js bundle for the page's figures
    verdict, config = html.index("Verdict: headline metrics"), html.index(">Configuration<")
    assert verdict < html.index("Plotly.newPlot(") < html.index("Performance, risk and trade metrics") < config
    assert config > html.index("Provenance")  # the configuration is the appendix
    assert "report.show_metrics()" not in html  # code hidden
    assert good.summary["symbols"] == ["BTC/USDT", "ETH/USDT"] and good.summary["start"].startswith("2024-01-01")
    assert good.summary["metrics"]["trade_count"] >= 0


def test_report_notebook_ran_every_cell_without_errors(good):
    nb = json.loads(good.notebook_path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in code)
    assert all(o["output_type"] != "error" for c in code for o in c.get("outputs", []))
    assert nb["metadata"]["papermill"]["parameters"]["end"] == SMALL["end"]


def test_report_never_includes_secrets(good):
    for path in (good.notebook_path, good.html_path):
        text = path.read_text(encoding="utf-8")
        assert CANARY not in text, path
    assert "WORKBENCH_TEST_API_SECRET" in good.html_path.read_text(encoding="utf-8")  # named, value masked


def test_unknown_strategy_fails_with_one_clear_line(tmp_path):
    with pytest.raises(ReportError) as info:
        run_report({"strategy": "nope", **SMALL}, tmp_path, name="bad")
    msg = str(info.value)
    assert "\n" not in msg
    assert re.fullmatch(r"report failed: unknown strategy 'nope'; choose one of: .*momentum.*", msg)
    nb = json.loads(info.value.output.notebook_path.read_text(encoding="utf-8"))
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert len(errors) == 1 and errors[0]["ename"] == "ReportParameterError"
    tb = "\n".join(errors[0]["traceback"])
    assert len(tb.splitlines()) <= 2 and "Traceback" not in tb and "unknown strategy 'nope'" in tb
    assert info.value.output.html_path.is_file()


def test_batch_of_two_writes_an_index_linking_both(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "base: {strategy: momentum, symbols: [BTC/USDT], start: 2024-01-01, end: 2024-01-03}\n"
        "grid:\n  params: {window: [30, 60]}\n"
    )
    index = run_batch(grid, tmp_path / "out", workers=2)
    html = index.read_text(encoding="utf-8")
    for name in ("01-window-30", "02-window-60"):
        assert f'<a href="{name}.html">{name}</a>' in html
        assert (index.parent / f"{name}.html").is_file() and (index.parent / f"{name}.ipynb").is_file()
    assert "2 runs, 2 ok, 0 failed" in html and "%" in html
    rows = json.loads((index.parent / "index.json").read_text())
    assert [r["error"] for r in rows] == [None, None]
    assert {r["summary"]["metrics"]["trade_count"] is not None for r in rows} == {True}


def test_workbench_report_takes_the_backtest_flags(tmp_path, monkeypatch, capsys):
    """`workbench report` with `workbench backtest`'s settings flags, end to end (one papermill run): a
    5-minute CSV at its own interval, fixed-quantity sizing, no slippage, a stop and a New York blackout."""
    from workbench.cli import main
    from workbench.data import resample_bars, sample_bars

    csv = tmp_path / "bars_5m.csv"
    resample_bars(sample_bars("BTC/USDT", days=3), "5m").to_csv(csv)
    monkeypatch.chdir(tmp_path)  # --data relative to where the command runs
    code = main(["report", "--data", "bars_5m.csv", "--sizing", "fixed_quantity:0.01", "--slippage-bps", "0",
                 "--stop-loss", "0.01", "--timezone", "America/New_York", "--blackout", "09:30-16:00",
                 "--db", f"sqlite:///{tmp_path / 'wb.db'}", "-o", str(tmp_path / "out"), "--name", "flags"])
    assert code == 0, capsys.readouterr().err
    html = (tmp_path / "out" / "flags.html").read_text(encoding="utf-8")
    nb = json.loads((tmp_path / "out" / "flags.ipynb").read_text(encoding="utf-8"))
    params = nb["metadata"]["papermill"]["parameters"]
    assert params["data"] == str(csv) and params["blackout"] == ["09:30-16:00"]
    for setting, value in (("data.timeframe", "5m"), ("data.source", "csv"), ("sizing.mode", "fixed_quantity"),
                           ("slippage.bps", "0.0"), ("risk.stop_loss", "0.01"), ("time.timezone", "America/New_York")):
        assert re.search(rf">{re.escape(setting)}</th>\s*<td[^>]*>{re.escape(value)}</td>", html), setting
    assert "Trade review" in html and "P&amp;L against holding time" in html and "By market regime" in html
