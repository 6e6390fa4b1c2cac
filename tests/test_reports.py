"""Report sections, parameters, batch files and HTML export, in process (papermill runs: test_reports_papermill.py)."""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from workbench import make_config
from workbench.backtest import run_backtest
from workbench.metrics import METRIC_LABELS, compute_metrics, empty_trades, monthly_returns
from workbench.reports import ReportError, ReportParameterError, prepare, sections, template_path
from workbench.reports.batch import BatchError, load_batch, write_index
from workbench.reports.cli import ReportUsageError, add_report_parser, cmd_report, parse_params, report_params
from workbench.reports.display import PLOTLY_MIME, ReportFigure, reset_plotlyjs
from workbench.reports.provenance import bars_fingerprint, scrub, scrub_obj, workbench_environment
from workbench.reports.run import export_html, notebook_parameters, read_summary

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def result():
    config = make_config(strategy="momentum", symbols=["BTC/USDT", "ETH/USDT"], start="2024-01-01", end="2024-01-03",
                         params={"window": 30})
    return run_backtest(config)


# ---- sections ------------------------------------------------------------------
def test_config_and_metrics_tables(result):
    cfg = sections.config_table(result)
    assert cfg.loc["strategy", "value"] == "momentum"
    assert json.loads(cfg.loc["symbols", "value"]) == ["BTC/USDT", "ETH/USDT"]
    assert json.loads(cfg.loc["params", "value"])["window"] == 30
    assert cfg.loc["commission.taker", "value"] == "0.001"
    met = sections.metrics_table(result)
    assert list(met.index) == [label for label, _ in METRIC_LABELS.values()]
    assert met.loc["Trades", "value"] == f"{result.metrics['trade_count']:,.0f}"
    assert met.loc["Total Return", "value"].endswith("%")


def test_headline_table_is_the_verdict(result):
    head = sections.headline_table(result)
    labels = [METRIC_LABELS[k][0] for k in sections.HEADLINE_KEYS]
    assert list(head.index) == [*labels, "Buy-and-hold Return"]
    met = sections.metrics_table(result)
    assert (head.loc[labels, "value"] == met.loc[labels, "value"]).all()
    bench = sections.format_benchmark(sections.benchmark_table(result))
    assert head.loc["Buy-and-hold Return", "value"] == bench.loc["Total Return", "buy_and_hold"]


def test_monthly_heatmap_matches_monthly_returns(result):
    fig = sections.monthly_returns_figure(result)
    table = monthly_returns(result.equity, result.config.initial_balance)
    z = np.asarray(fig.data[0].z, dtype=float)
    assert z.shape == (len(table), 12)
    assert z[0, 0] == pytest.approx(100 * table.iloc[0, 0])
    assert np.isnan(z[0, 1:]).all()


def test_trade_figures_count_closed_trades(result):
    closed = sections.closed_trades(result)
    assert len(closed) > 0
    pnl = sections.pnl_distribution_figure(result)
    assert sum(len(t.x) for t in pnl.data) == len(closed)
    wins = pnl.data[0]
    assert (np.asarray(wins.x) > 0).all() and wins.name.startswith("wins")
    hold = sections.holding_period_figure(result)
    assert len(hold.data[0].x) == len(closed)
    assert "holding period" in hold.layout.xaxis.title.text


def test_trade_figures_without_trades(result):
    empty = dataclasses.replace(result, trades=empty_trades())
    for fig in (sections.pnl_distribution_figure(empty), sections.holding_period_figure(empty)):
        assert not fig.data and fig.layout.annotations[0].text == "no closed trades"
    slip = sections.slippage_table(empty)
    assert slip.loc["all", "trades"] == 0 and np.isnan(slip.loc["all", "avg_slippage"])


def test_slippage_table_sums_trades(result):
    t = result.trades
    slip = sections.slippage_table(result)
    assert list(slip.index) == ["BTC/USDT", "ETH/USDT", "all"]
    assert slip.loc["all", "trades"] == len(t)
    assert slip.loc["all", "total_slippage"] == pytest.approx(t["slippage"].sum())
    assert slip.loc["all", "total_commission"] == pytest.approx(t["commission"].sum())
    eth = t[t["symbol"] == "ETH/USDT"]
    assert slip.loc["ETH/USDT", "avg_commission"] == pytest.approx(eth["commission"].mean())
    notional = (eth["quantity"] * eth["entry_price"]).sum()
    assert slip.loc["ETH/USDT", "slippage_pct"] == pytest.approx(eth["slippage"].sum() / notional)


def test_benchmark_is_equal_weight_buy_and_hold(result):
    cfg = result.config
    bench = sections.benchmark_equity(result)
    assert bench.index.equals(result.equity.index)
    half = cfg.initial_balance / 2
    expected = sum(
        half * (1 - cfg.commission.taker) * b["close"].iloc[-1] / b["open"].iloc[0] for b in result.bars.values()
    )
    assert bench.iloc[-1] == pytest.approx(expected)
    table = sections.benchmark_table(result)
    assert table.loc["total_return", "strategy"] == pytest.approx(result.metrics["total_return"])
    want = compute_metrics(bench, None, cfg.initial_balance)
    assert table.loc["sharpe_ratio", "buy_and_hold"] == pytest.approx(want["sharpe_ratio"])
    shown = sections.format_benchmark(table)
    assert "Sharpe Ratio" in shown.index and shown.loc["Total Return", "buy_and_hold"].endswith("%")
    fig = sections.benchmark_figure(result)
    assert [t.name for t in fig.data] == ["strategy", "buy & hold"]


def test_quality_and_provenance_tables(result, monkeypatch):
    q = sections.quality_table(result)
    assert list(q.index) == ["BTC/USDT", "ETH/USDT"] and q["ok"].all()
    assert (q["bars"] == [len(b) for b in result.bars.values()]).all()
    monkeypatch.setenv("WORKBENCH_EXCHANGE_API_KEY", "canary-key-123")
    monkeypatch.setenv("WORKBENCH_HOME_HINT", "uses canary-key-123 inside")
    p = sections.provenance_table(result)
    text = p.to_string()
    assert "canary-key-123" not in text
    assert p.loc["env: WORKBENCH_EXCHANGE_API_KEY", "value"] == "***"
    assert p.loc["env: WORKBENCH_HOME_HINT", "value"] == "uses *** inside"
    import workbench

    assert p.loc["version: workbench", "value"] == workbench.__version__
    assert json.loads(p.loc["config (JSON)", "value"]) == result.config.to_dict()
    btc = result.bars["BTC/USDT"]
    assert p.loc["data sha256: BTC/USDT", "value"] == bars_fingerprint(btc)
    assert len(p.loc["data sha256: all", "value"]) == 64


def test_fingerprint_sees_every_value(result):
    bars = result.bars["BTC/USDT"]
    changed = bars.copy()
    changed.iloc[5, 3] += 1e-9
    assert bars_fingerprint(changed) != bars_fingerprint(bars) == bars_fingerprint(bars.copy())
    h = hashlib.sha256(bars.index.as_unit("ns").asi8.tobytes())
    for c in bars.columns:
        h.update(c.encode())
        h.update(bars[c].to_numpy("float64").tobytes())
    assert bars_fingerprint(bars) == h.hexdigest()


def test_scrub_masks_secret_environment_values():
    env = {"BINANCE_SECRET": "s3cr3t-value", "DB_PASSWORD": "hunter22", "PLAIN": "visible", "API_TOKEN": "x"}
    assert scrub("a s3cr3t-value b hunter22 visible x", env) == "a *** b *** visible x"
    assert scrub_obj({"k": ["hunter22"], "hunter22": 1}, env) == {"k": ["***"], "***": 1}
    assert workbench_environment({"WORKBENCH_API_KEY": "abcd1234", "WORKBENCH_HOME": "/h", "OTHER": "1"}) == {
        "WORKBENCH_API_KEY": "***", "WORKBENCH_HOME": "/h"}


def test_secret_in_config_is_masked(result, monkeypatch):
    monkeypatch.setenv("MY_EXCHANGE_TOKEN", "tok-canary-99")
    leaky = dataclasses.replace(result, config=result.config.replace(name="run with tok-canary-99"))
    assert sections.config_table(leaky).loc["name", "value"] == "run with ***"
    assert "tok-canary-99" not in sections.provenance_table(leaky).to_string()


# ---- display -------------------------------------------------------------------
def test_report_figure_embeds_plotlyjs_once():
    reset_plotlyjs()
    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]), layout=dict(title="t"))
    first, second = ReportFigure(fig)._repr_mimebundle_(), ReportFigure(fig)._repr_mimebundle_()
    assert "window.Plotly = Plotly" in first["text/html"] and "window.Plotly = Plotly" not in second["text/html"]
    assert "Plotly.newPlot" in second["text/html"] and PLOTLY_MIME in second
    assert repr(ReportFigure(fig)) == "<ReportFigure: t>"


def test_html_export_is_self_contained(tmp_path):
    reset_plotlyjs()
    fig = ReportFigure(go.Figure(go.Bar(x=["a"], y=[1])))
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("## Section"),
        nbformat.v4.new_code_cell("secret_code()", outputs=[
            nbformat.v4.new_output("display_data", data=fig._repr_mimebundle_())]),
    ])
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    html = export_html(path, tmp_path / "x.html").read_text(encoding="utf-8")
    assert "Plotly.newPlot" in html and "window.Plotly = Plotly" in html
    assert "secret_code" not in html  # code cells hidden
    page = (html[: html.index("window.__wbDefine = window.define")]
            + html[html.index("window.define = window.__wbDefine"):])
    assert "window.Plotly" not in page  # the rest of the page, plotly.js cut out
    assert "<script src=" not in page and "cdnjs" not in page and "mathjax" not in page.lower()
    assert read_summary(path) is None


# ---- parameters ------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, want", [
    ({"strategy": "nope"}, "unknown strategy 'nope'; choose one of: "),
    ({"params": "{bad json"}, "params: not valid JSON"),
    ({"params": {"windw": 5}}, "has no param 'windw'"),
    ({"symbols": "btc"}, "symbols: symbol 'btc' is not BASE/QUOTE"),
    ({"session_id": "a", "template": "b"}, "give session_id or template, not both"),
    ({"stop_loss": 2}, "risk.stop_loss: "),
])
def test_prepare_errors_are_one_line(kwargs, want):
    with pytest.raises(ReportParameterError) as info:
        prepare(**kwargs)
    msg = str(info.value)
    assert want in msg and "\n" not in msg
    lines = info.value._render_traceback_()
    assert len(lines) == 1 and want in lines[0]


def test_unknown_strategy_names_the_choices():
    with pytest.raises(ReportParameterError, match=r"momentum.*sma_cross|sma_cross.*momentum"):
        prepare(strategy="nope")


def test_prepare_maps_parameters():
    r = prepare(strategy="sma_cross", params='{"fast": 5, "slow": 20}', symbols="BTC/USDT, ETH/USDT",
                start="2024-01-01", end="2024-01-02", initial_balance=500, fee=0.002, stop_loss=0.05,
                take_profit=0.1, trailing_stop=0.03)
    c = r.config
    assert (c.strategy, c.params, c.symbols) == ("sma_cross", {"fast": 5, "slow": 20}, ["BTC/USDT", "ETH/USDT"])
    assert c.initial_balance == 500 and c.commission.taker == c.commission.maker == 0.002
    assert (c.risk.stop_loss, c.risk.take_profit, c.risk.trailing_stop) == (0.05, 0.1, 0.03)
    assert r.source == "parameters" and r.result is None


def test_prepare_from_saved_session_and_template(store_url):
    from workbench.store import Store

    url = store_url
    saved = make_config(strategy="sma_cross", params={"fast": 4, "slow": 9}, symbols=["ETH/USDT"],
                        start="2024-01-02", end="2024-01-03", risk={"stop_loss": 0.02})
    with Store(url) as st:
        sid = st.create_session(saved)
        st.save_template("tight", saved)
    r = prepare(session_id=sid, db_url=url)
    assert r.config.to_dict() == saved.to_dict() and r.source == f"session {sid!r}"
    r = prepare(template="tight", db_url=url, end="2024-01-05", fee=0.0005)
    assert r.config.params == {"fast": 4, "slow": 9} and r.config.end.day == 5 and r.config.risk.stop_loss == 0.02
    assert r.config.commission.taker == 0.0005
    r = prepare(template="tight", db_url=url, strategy="momentum")  # another strategy: its own defaults
    assert r.config.strategy == "momentum" and "window" in r.config.params
    with pytest.raises(ReportParameterError, match="^no template 'nope'$"):
        prepare(template="nope", db_url=url)


def test_run_turns_data_errors_into_one_line():
    r = prepare(start="2023-01-01", end="2023-01-02")
    with pytest.raises(ReportParameterError) as info:
        r.run()
    assert "sample data starts at 2024-01-01" in str(info.value) and "\n" not in str(info.value)


def test_notebook_parameters_checks_names_and_keeps_saved_configs():
    with pytest.raises(ReportError, match="unknown report parameter.*'strat'.*known: strategy"):
        notebook_parameters({"strat": "x"})
    p = notebook_parameters({"session_id": "abc", "end": pd.Timestamp("2024-01-05").date()})
    assert p["strategy"] is None and p["symbols"] is None and p["end"] == "2024-01-05" and p["session_id"] == "abc"
    assert notebook_parameters({"symbols": ("BTC/USDT",)}) == {"symbols": ["BTC/USDT"]}


# ---- template --------------------------------------------------------------------
def test_one_report_template_shipped_with_the_package():
    assert template_path() == ROOT / "workbench" / "reports" / "backtest_report.ipynb"
    copies = [p for d in ("notebooks", "dashboards") for p in (ROOT / d).glob("*.ipynb")
              if "report.prepare" in p.read_text(encoding="utf-8") or "wr.prepare" in p.read_text(encoding="utf-8")]
    assert copies == [], "one report template: edit workbench/reports/backtest_report.ipynb, keep no copies"
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"reports/*.ipynb"' in pyproject  # package data: it ships in the wheel


def test_template_opens_with_the_verdict_and_ends_with_the_configuration():
    nb = nbformat.read(template_path(), as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    order = [code.index(f"report.{m}()") for m in ("run", "show_headline", "show_equity", "show_metrics")]
    assert order == sorted(order) and order[1] == order[0] + 1  # verdict right after the run
    assert code[-1] == "report.show_config()"  # the appendix
    headings = [c.source.splitlines()[0] for c in nb.cells if c.cell_type == "markdown"]
    assert headings[1] == "## Verdict" and headings[-1] == "## Appendix: configuration"


def test_template_cells_are_thin():
    nb = nbformat.read(template_path(), as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    params = {n.targets[0].id for n in ast.parse(code[0].source).body}
    assert params == set(notebook_parameters({k: None for k in params}))
    for cell in code[1:]:
        assert len(ast.parse(cell.source).body) == 1, cell.source
        assert not cell.outputs
    sources = "\n".join(c.source for c in code)
    for method in ("run", "show_headline", "show_config", "show_metrics", "show_equity", "show_monthly_returns",
                   "show_trade_analysis", "show_benchmark", "show_data_quality", "show_provenance"):
        assert f"report.{method}()" in sources


# ---- batch and CLI -----------------------------------------------------------------
def test_load_batch_expands_grid_and_runs(tmp_path):
    f = tmp_path / "grid.yaml"
    f.write_text("""
base: {strategy: momentum, symbols: [BTC/USDT], start: 2024-01-01, end: 2024-01-02, params: {trend_window: 0}}
grid:
  fee: [0.001, 0.002]
  params: {window: [20, 40]}
runs:
  - {name: sma, strategy: sma_cross, params: {fast: 3, slow: 8}}
""")
    runs = load_batch(f, db_url="sqlite:///x.db")
    assert len(runs) == 5
    names = [n for n, _, _ in runs]
    assert names[0] == "01-fee-0.001_window-20" and names[-1] == "sma" and len(set(names)) == 5
    _, p, label = runs[3]
    assert p["fee"] == 0.002 and p["params"] == {"trend_window": 0, "window": 40} and label == "fee=0.002,window=40"
    assert p["start"] == pd.Timestamp("2024-01-01").date() and p["db_url"] == "sqlite:///x.db"
    assert runs[-1][1]["params"] == {"fast": 3, "slow": 8}  # another strategy: base params dropped


@pytest.mark.parametrize("text, want", [
    ("base: {strategy: momentum}", "needs a 'grid'"),
    ("grid: {fee: [1]}\nextra: 1", "unknown section"),
    ("grid: {colour: [1, 2]}", "run 1 (colour=1): unknown report parameter"),
    ("grid: [", "not valid YAML"),
])
def test_load_batch_errors(tmp_path, text, want):
    f = tmp_path / "g.yaml"
    f.write_text(text)
    with pytest.raises(BatchError, match=want.replace("(", r"\(").replace(")", r"\)")):
        load_batch(f)


def test_index_links_reports_and_shows_errors(tmp_path):
    rows = [
        {"name": "a", "label": "window=3", "notebook": tmp_path / "a.ipynb", "html": tmp_path / "a.html",
         "summary": {"metrics": {"total_return": 0.1234, "sharpe_ratio": "inf", "max_drawdown": 0.05,
                                 "trade_count": 7}}, "error": None},
        {"name": "b", "label": "strategy=nope", "notebook": tmp_path / "b.ipynb", "html": None, "summary": None,
         "error": "report failed: unknown strategy 'nope'; choose one of: x"},
    ]
    html = write_index(rows, tmp_path / "index.html").read_text()
    assert '<a href="a.html">a</a>' in html and '<a href="b.ipynb">b</a>' in html
    assert "12.34%" in html and "∞" in html and "5.00%" in html and ">7<" in html
    assert "failed: unknown strategy &#x27;nope&#x27;; choose one of: x" in html and "1 failed" in html


def _parser():
    import argparse

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db")
    parser = argparse.ArgumentParser(prog="workbench")
    add_report_parser(parser.add_subparsers(dest="command", required=True), common)
    return parser


def test_cli_arguments_become_report_parameters():
    args = _parser().parse_args(["report", "--strategy", "sma_cross", "--param", "fast=3", "--param", "slow=x9",
                                 "--symbols", "BTC/USDT,ETH/USDT", "--start", "2024-01-01", "--fee", "0.002",
                                 "--stop-loss", "0.05", "-o", "out", "--db", "sqlite:///a.db"])
    p = report_params(args)
    assert p == {"strategy": "sma_cross", "params": {"fast": 3, "slow": "x9"}, "symbols": ["BTC/USDT", "ETH/USDT"],
                 "start": "2024-01-01", "end": None, "fee": 0.002, "stop_loss": 0.05, "db_url": "sqlite:///a.db"}
    assert args.out == "out" and args.workers == 2 and not args.no_html
    p = report_params(_parser().parse_args(["report", "--session", "abc"]))
    assert p == {"session_id": "abc"}
    assert parse_params(["a=true", "b=0.5", "c=BTC"]) == {"a": True, "b": 0.5, "c": "BTC"}
    with pytest.raises(ReportUsageError, match="key=value"):
        parse_params(["nokey"])


def test_cli_batch_rejects_single_run_flags():
    args = _parser().parse_args(["report", "--batch", "g.yaml", "--strategy", "x", "--param", "a=1"])
    with pytest.raises(ReportUsageError, match="drop --strategy, --param"):
        cmd_report(args)


def test_cli_takes_the_backtest_settings_flags(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = _parser().parse_args(["report", "--data", "bars.csv", "--timeframe", "1h", "--sizing", "fixed_amount:500",
                                 "--slippage-bps", "2", "--timezone", "Europe/Paris", "--blackout", "12:00-12:30",
                                 "--trailing-stop", "0.03"])
    p = report_params(args)
    assert p == {"strategy": "momentum", "start": None, "end": None, "data": str(tmp_path / "bars.csv"),
                 "timeframe": "1h", "sizing": "fixed_amount:500", "slippage_bps": 2.0, "timezone": "Europe/Paris",
                 "blackout": ["12:00-12:30"], "trailing_stop": 0.03}
    config = prepare(**{k: v for k, v in p.items() if k not in ("data", "timeframe")}).config
    assert (config.sizing.mode, config.sizing.value, config.slippage.bps) == ("fixed_amount", 500, 2.0)
    assert [(w.start, w.end) for w in config.time.blackouts] == [("12:00", "12:30")]
    assert (config.time.timezone, config.risk.trailing_stop) == ("Europe/Paris", 0.03)


@pytest.mark.parametrize("flags, line", [
    (["--slippage-bps", "-1"], "--slippage-bps (slippage.bps): Input should be greater than or equal to 0"),
    (["--sizing", "0.5"], "--sizing takes MODE:VALUE, e.g. percent_equity:0.5"),
    (["--timezone", "Mars/Base"], "--timezone (time.timezone): unknown time zone; use an IANA name"),
])
def test_cli_bad_settings_are_the_backtest_commands_one_line_before_any_kernel(flags, line, tmp_path, capsys):
    from workbench.cli import main

    assert main(["report", *flags, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert line in err and err.count("\n") == 1 and err.startswith("workbench: ")
    assert not (tmp_path / "out").exists()  # refused before papermill started a kernel
