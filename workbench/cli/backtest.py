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
from workbench.reports.flags import (
    add_config_flags,
    apply_settings,
    flag_problems,
    parse_params,
    settings_from_args,
)
from workbench.strategies.presets import PRESET_NAMES

DESCRIPTION = """Run one backtest from flags, over a saved config (--config) or the defaults, and save it to
the store. The flags are checked as the wizard checks its fields; a bad value exits 2 with one line naming
the flag. --data FILE.csv runs at the file's own bar interval; --timeframe resamples to a coarser one."""


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
    if args.preset:  # the strategy's built-in preset for a market condition; the flags below override it
        from workbench.strategies.presets import apply_preset

        fields = apply_preset(fields, args.preset)
    if args.symbols:
        fields["symbols"] = [s.strip() for s in args.symbols.split(",") if s.strip()]
    if args.balance is not None:
        fields["initial_balance"] = args.balance
    if args.param:
        fields["params"] = {**fields.get("params", {}), **parse_params(args.param)}  # --param changes single params
    for name in ("start", "end"):
        if getattr(args, name):
            fields[name] = getattr(args, name)
    apply_settings(fields, settings_from_args(args))
    return make_config(**fields)


def cmd_backtest(args: argparse.Namespace) -> int:
    from workbench.backtest import run_backtest

    try:
        config = config_from_args(args)
    except ConfigError as e:
        raise ValueError(flag_problems(e)) from None
    if args.suggest_allocations:
        return _suggest(config, args)
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


def _suggest(config: SessionConfig, args: argparse.Namespace) -> int:
    """``--suggest-allocations METHOD``: print the legs' suggested allocations; nothing is run or saved."""
    from workbench.backtest.allocate import suggest_allocations

    suggestion = suggest_allocations(config, method=args.suggest_allocations, freq=args.allocation_freq)
    if args.json:
        print(dumps(suggestion.to_dict()))
    else:
        print(suggestion.frame().to_string(float_format=lambda v: f"{v:.4f}"))
        print(f"\n{suggestion.method}: " + ", ".join(f"{k} {v:.4g}" for k, v in suggestion.expected.items()))
        print("a suggestion only: put these allocations in the config's legs to use them")
    return 0


def add_backtest_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``workbench backtest``."""
    bt = sub.add_parser("backtest", parents=[common], help="run a vectorbt backtest and save it to the store",
                        description=DESCRIPTION)
    add_config_flags(bt)
    bt.add_argument("--config", metavar="FILE.json", help="start from a saved config (JSON)")
    bt.add_argument("--preset", choices=PRESET_NAMES, help="the strategy's built-in params and stops for a "
                    "trending, ranging or high-volatility market (--param and the risk flags override them)")
    bt.add_argument("--json", action="store_true", help="print config, metrics and trade count as JSON")
    bt.add_argument("--no-save", action="store_true", help="do not record the run in the store")
    bt.add_argument("--suggest-allocations", metavar="METHOD", choices=("hrp", "max_sharpe", "min_volatility"),
                    help="instead of a backtest, suggest the legs' allocations (hrp, max_sharpe or min_volatility) "
                    "from each leg's backtest; nothing is changed")
    bt.add_argument("--allocation-freq", default="1D", metavar="FREQ",
                    help="the period of the legs' returns for --suggest-allocations (default 1D; e.g. 1h)")
    bt.set_defaults(func=cmd_backtest)
