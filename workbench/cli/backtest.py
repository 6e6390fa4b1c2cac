"""``workbench backtest``: one vectorbt backtest from flags (over a saved config or SessionConfig's defaults).

Every flag sets one SessionConfig field and :func:`~workbench.config.make_config` validates the whole
config, as the wizard does; its problems are printed as one line naming the flag. ``--data FILE.csv``
runs at the file's own bar interval unless ``--timeframe`` asks for a coarser one.
"""
from __future__ import annotations

import argparse
from typing import Any

from workbench.cli.output import dumps
from workbench.config import ConfigError, SessionConfig, make_config
from workbench.reports.cli import parse_params

#: config fields -> the flag that sets them (longest prefix wins), for error messages
FLAGS: dict[str, str] = {
    "symbols": "--symbols", "params": "--param", "initial_balance": "--balance", "commission": "--fee",
    "start": "--start", "end": "--end", "data.timeframe": "--timeframe", "data.csv_path": "--data",
    "risk.stop_loss": "--stop-loss", "risk.take_profit": "--take-profit", "risk.trailing_stop": "--trailing-stop",
    "sizing": "--sizing", "slippage.bps": "--slippage-bps", "time.timezone": "--timezone",
    "time.blackouts": "--blackout",
}
DESCRIPTION = """Run one backtest from flags, over a saved config (--config) or the defaults, and save it to
the store. The flags are checked as the wizard checks its fields; a bad value exits 2 with one line naming
the flag. --data FILE.csv runs at the file's own bar interval; --timeframe resamples to a coarser one."""
SIZING_EXAMPLE = "percent_equity:0.5, fixed_amount:1000 or fixed_quantity:0.1"


def _put(fields: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``fields["a"]["b"] = value`` for ``"a.b"``, keeping the other settings of ``a``."""
    *parents, last = dotted.split(".")
    for part in parents:
        fields = fields.setdefault(part, {})
    fields[last] = value


def _sizing(text: str) -> dict[str, Any]:
    mode, sep, value = text.partition(":")
    if not sep or not mode.strip() or not value.strip():
        raise ValueError(f"--sizing takes MODE:VALUE, e.g. {SIZING_EXAMPLE} (got {text!r})")
    try:
        return {"mode": mode.strip(), "value": float(value)}  # make_config checks both
    except ValueError:
        return {"mode": mode.strip(), "value": value.strip()}  # ... and says it is not a number


def _window(text: str) -> dict[str, str]:
    start, sep, end = text.partition("-")
    if not sep:
        raise ValueError(f"--blackout takes HH:MM-HH:MM, e.g. --blackout 12:00-12:30 (got {text!r})")
    return {"start": start.strip(), "end": end.strip()}  # make_config checks the times


def csv_timeframe(path: str, timeframe: str | None) -> str | None:
    """The timeframe to run ``path``'s bars at: ``timeframe`` if they can make it (the same or coarser
    than their own interval), else the file's own interval; None for a file of one bar."""
    from workbench.data import BarsError, bar_interval, check_timeframe, interval_name, read_csv_bars, timeframe_delta

    interval = bar_interval(read_csv_bars(path).index)
    if interval is None or timeframe is None:
        return timeframe if interval is None else interval_name(interval)
    try:
        timeframe_delta(timeframe)
    except BarsError:
        return timeframe  # not a timeframe at all: make_config names the ones it knows
    try:
        check_timeframe(interval, timeframe)
    except BarsError:
        own = interval_name(interval)
        raise ValueError(f"--timeframe {timeframe} is finer than the {own} bars in {path} (bars cannot be split); "
                         f"leave --timeframe out to run at {own}, or give a coarser one") from None
    return timeframe


def config_from_args(args: argparse.Namespace) -> SessionConfig:
    """The SessionConfig a ``backtest`` command line describes: the flags given, over a saved config
    (``--config``) or SessionConfig's defaults. Raises ConfigError (make_config's) on bad values."""
    fields: dict[str, Any] = {}
    if args.config:
        with open(args.config, encoding="utf-8") as fh:
            fields = SessionConfig.from_json(fh.read()).to_dict()
        if args.strategy and args.strategy != fields["strategy"]:
            del fields["params"]  # they belong to the saved strategy, not the one given
    if args.strategy:
        fields["strategy"] = args.strategy
    if args.symbols:
        fields["symbols"] = [s.strip() for s in args.symbols.split(",") if s.strip()]
    if args.balance is not None:
        fields["initial_balance"] = args.balance
    if args.param:
        fields["params"] = {**fields.get("params", {}), **parse_params(args.param)}  # --param changes single params
    for name in ("start", "end"):
        if getattr(args, name):
            fields[name] = getattr(args, name)
    timeframe = args.timeframe
    if args.data:
        fields["data"] = {"source": "csv", "csv_path": args.data}
        timeframe = csv_timeframe(args.data, timeframe)
    settings = {
        "data.timeframe": timeframe, "commission.taker": args.fee, "commission.maker": args.fee,
        "risk.stop_loss": args.stop_loss, "risk.take_profit": args.take_profit,
        "risk.trailing_stop": args.trailing_stop, "slippage.bps": args.slippage_bps, "time.timezone": args.timezone,
        "sizing": None if args.sizing is None else _sizing(args.sizing),
        "time.blackouts": None if args.blackout is None else [_window(w) for w in args.blackout],
    }
    for dotted, value in settings.items():
        if value is not None:
            _put(fields, dotted, value)
    return make_config(**fields)


def flag_problems(err: ConfigError) -> str:
    """A ConfigError as one line, each problem named by the flag that sets its field."""
    from workbench.reports.report import one_line

    def named(field: str) -> str:
        key = max((k for k in FLAGS if field == k or field.startswith(k + ".")), key=len, default=None)
        return f"{FLAGS[key]} ({field})" if key else field

    return one_line(ConfigError([(named(f), v, m) for f, v, m in err.problems]))


def cmd_backtest(args: argparse.Namespace) -> int:
    from workbench.backtest import run_backtest

    try:
        config = config_from_args(args)
    except ConfigError as e:
        raise ValueError(flag_problems(e)) from None
    result = run_backtest(config, progress=not args.json)
    session_id = None
    if not args.no_save:
        from workbench.store import Store

        session_id = Store(args.db).save_backtest(config, result)
    if args.json:
        out = {
            "config": config.to_dict(),
            "metrics": result.metrics,
            "trade_count": int(len(result.trades)),
            "session_id": session_id,
        }
        print(dumps(out))
    else:
        print(result.summary())
        if session_id:
            print(f"\nsaved as session {session_id}")
    return 0


def add_backtest_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``workbench backtest``."""
    bt = sub.add_parser("backtest", parents=[common], help="run a vectorbt backtest and save it to the store",
                        description=DESCRIPTION)
    bt.add_argument("--strategy", help="strategy name (default momentum); see the registry")
    bt.add_argument("--symbols", help="comma-separated, e.g. BTC/USDT,ETH/USDT (default BTC/USDT)")
    bt.add_argument("--start", help="first bar, e.g. 2024-01-01")
    bt.add_argument("--end", help="last bar, e.g. 2024-02-01")
    bt.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="strategy parameter")
    bt.add_argument("--balance", type=float, help="initial balance, quote currency (default 10000)")
    bt.add_argument("--fee", type=float, default=None, help="commission as a fraction, e.g. 0.001")
    bt.add_argument("--data", metavar="FILE.csv", help="backtest bars from a CSV file, at its own bar interval")
    bt.add_argument("--timeframe", metavar="TF", help="bar timeframe, e.g. 1h: CSV bars are resampled to it "
                    "(the same as the file's or coarser); sample data is generated at it (default 1m)")
    bt.add_argument("--stop-loss", type=float, metavar="FRACTION", help="close below entry by this, e.g. 0.05")
    bt.add_argument("--take-profit", type=float, metavar="FRACTION", help="close above entry by this, e.g. 0.1")
    bt.add_argument("--trailing-stop", type=float, metavar="FRACTION",
                    help="close below the high since entry by this, e.g. 0.03")
    bt.add_argument("--sizing", metavar="MODE:VALUE", help=f"position sizing, e.g. {SIZING_EXAMPLE}")
    bt.add_argument("--slippage-bps", type=float, metavar="BPS", help="fixed slippage in basis points (default 5)")
    bt.add_argument("--timezone", metavar="TZ", help="time zone of --blackout windows, e.g. America/New_York")
    bt.add_argument("--blackout", action="append", metavar="HH:MM-HH:MM",
                    help="no new entries in this daily window (repeat for several)")
    bt.add_argument("--config", metavar="FILE.json", help="start from a saved config (JSON)")
    bt.add_argument("--json", action="store_true", help="print config, metrics and trade count as JSON")
    bt.add_argument("--no-save", action="store_true", help="do not record the run in the store")
    bt.set_defaults(func=cmd_backtest)
