"""The backtest settings as command-line flags, defined once for ``workbench backtest`` and ``workbench
report``: :func:`add_config_flags` declares them, :func:`apply_settings` turns their values into
SessionConfig fields (the report template's :func:`~workbench.reports.report.prepare` calls it too), and
:func:`flag_problems` names the flag behind each problem :func:`~workbench.config.make_config` finds, so
both commands say the same thing the wizard says about a bad value. ``--data FILE.csv`` runs at the
file's own bar interval unless ``--timeframe`` asks for a coarser one.
"""
from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workbench.config import ConfigError

log = logging.getLogger(__name__)

#: config fields -> the flag that sets them (longest prefix wins), for error messages
FLAGS: dict[str, str] = {
    "symbols": "--symbols", "params": "--param", "initial_balance": "--balance", "commission": "--fee",
    "start": "--start", "end": "--end", "data.timeframe": "--timeframe", "data.csv_path": "--data",
    "risk.stop_loss": "--stop-loss", "risk.take_profit": "--take-profit", "risk.trailing_stop": "--trailing-stop",
    "sizing": "--sizing", "slippage.bps": "--slippage-bps", "time.timezone": "--timezone",
    "time.blackouts": "--blackout", "time.events": "--events", "base_currency": "--base-currency",
}
#: the settings :func:`apply_settings` knows (argparse dests, and the report template's parameter names)
SETTINGS: tuple[str, ...] = ("data", "timeframe", "fee", "stop_loss", "take_profit", "trailing_stop", "sizing",
                             "slippage_bps", "timezone", "blackout", "events", "base_currency")
#: every flag :func:`add_config_flags` adds, by argparse dest
CONFIG_FLAGS: tuple[str, ...] = ("strategy", "param", "symbols", "start", "end", "balance", *SETTINGS)
SIZING_EXAMPLE = "percent_equity:0.5, fixed_amount:1000 or fixed_quantity:0.1"


class UsageError(ValueError):
    """Command-line arguments that cannot be used as given or together; the message names the flag."""


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """The strategy, range and settings flags both commands take."""
    p.add_argument("--strategy", help="strategy name (default momentum); see the registry")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="strategy parameter (repeat)")
    p.add_argument("--symbols", help="comma-separated, e.g. BTC/USDT,ETH/USDT (default BTC/USDT)")
    p.add_argument("--start", help="first bar, e.g. 2024-01-01")
    p.add_argument("--end", help="last bar, e.g. 2024-02-01")
    p.add_argument("--balance", type=float, help="initial balance, quote currency (default 10000)")
    p.add_argument("--fee", type=float, default=None, help="commission as a fraction, e.g. 0.001")
    p.add_argument("--data", metavar="FILE.csv", help="bars from a CSV file, at its own bar interval")
    p.add_argument("--timeframe", metavar="TF", help="bar timeframe, e.g. 1h: CSV bars are resampled to it "
                   "(the same as the file's or coarser); sample data is generated at it (default 1m)")
    p.add_argument("--stop-loss", type=float, metavar="FRACTION", help="close below entry by this, e.g. 0.05")
    p.add_argument("--take-profit", type=float, metavar="FRACTION", help="close above entry by this, e.g. 0.1")
    p.add_argument("--trailing-stop", type=float, metavar="FRACTION",
                   help="close below the high since entry by this, e.g. 0.03")
    p.add_argument("--sizing", metavar="MODE:VALUE", help=f"position sizing, e.g. {SIZING_EXAMPLE}")
    p.add_argument("--slippage-bps", type=float, metavar="BPS", help="fixed slippage in basis points (default 5)")
    p.add_argument("--timezone", metavar="TZ", help="time zone of --blackout windows, e.g. America/New_York")
    p.add_argument("--blackout", action="append", metavar="HH:MM-HH:MM",
                   help="no new entries in this daily window (repeat for several)")
    p.add_argument("--events", metavar="FILE", help="an event calendar (.ics or .csv start,end,name): no new "
                   "entries inside its events (docs/risk.md)")
    p.add_argument("--base-currency", metavar="CODE", help="currency of cash and P&L, e.g. USDT: needed when the "
                   "symbols' quotes differ (BTC/USDT,ETH/BTC); others are converted into it (docs/currencies.md)")


def _value(text: str) -> Any:
    """``30`` -> 30, ``0.5`` -> 0.5, ``true`` -> True; anything else stays a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_params(pairs: list[str], flag: str = "--param", example: str = "window=30") -> dict[str, Any]:
    """``["window=30", "entry_threshold=0.02"]`` -> ``{"window": 30, "entry_threshold": 0.02}``."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} takes key=value, e.g. {flag} {example} (got {pair!r})")
        out[key.strip()] = _value(value.strip())
    return out


def parse_sizing(text: str | Mapping[str, Any]) -> dict[str, Any]:
    """``"fixed_amount:1000"`` -> ``{"mode": "fixed_amount", "value": 1000.0}`` (a mapping is kept as is)."""
    if isinstance(text, Mapping):
        return dict(text)
    mode, sep, value = text.partition(":")
    if not sep or not mode.strip() or not value.strip():
        raise UsageError(f"--sizing takes MODE:VALUE, e.g. {SIZING_EXAMPLE} (got {text!r})")
    try:
        return {"mode": mode.strip(), "value": float(value)}  # make_config checks both
    except ValueError:
        return {"mode": mode.strip(), "value": value.strip()}  # ... and says it is not a number


def parse_window(text: str | Mapping[str, Any]) -> dict[str, Any]:
    """``"12:00-12:30"`` -> ``{"start": "12:00", "end": "12:30"}`` (a mapping is kept as is)."""
    if isinstance(text, Mapping):
        return dict(text)
    start, sep, end = text.partition("-")
    if not sep:
        raise UsageError(f"--blackout takes HH:MM-HH:MM, e.g. --blackout 12:00-12:30 (got {text!r})")
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
        raise UsageError(f"--timeframe {timeframe} is finer than the {own} bars in {path} (bars cannot be split); "
                        f"leave --timeframe out to run at {own}, or give a coarser one") from None
    return timeframe


def _put(fields: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``fields["a"]["b"] = value`` for ``"a.b"``, keeping the other settings of ``a``."""
    *parents, last = dotted.split(".")
    for part in parents:
        fields = fields.setdefault(part, {})
    fields[last] = value


def apply_settings(fields: dict[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """Set the config ``fields`` the :data:`SETTINGS` in ``settings`` ask for (None or absent: keep the
    field as it is) and return ``fields``. ``data`` is a CSV file, run at its own interval unless
    ``timeframe`` is coarser; ``fee`` sets taker and maker commission; ``blackout`` is a list of windows."""
    get = settings.get
    timeframe = get("timeframe")
    if get("data"):
        fields["data"] = {"source": "csv", "csv_path": str(get("data"))}
        timeframe = csv_timeframe(str(get("data")), timeframe)
    blackout, sizing, events = get("blackout"), get("sizing"), get("events")
    values = {
        "data.timeframe": timeframe, "commission.taker": get("fee"), "commission.maker": get("fee"),
        "risk.stop_loss": get("stop_loss"), "risk.take_profit": get("take_profit"),
        "risk.trailing_stop": get("trailing_stop"), "slippage.bps": get("slippage_bps"),
        "time.timezone": get("timezone"),
        "sizing": None if sizing is None else parse_sizing(sizing),
        "time.blackouts": None if blackout is None else [parse_window(w) for w in
                                                         ([blackout] if isinstance(blackout, str) else blackout)],
        "time.events": None if not events else _events(str(events)),
        "base_currency": get("base_currency"),
    }
    for dotted, value in values.items():
        if value is not None:
            _put(fields, dotted, value)
    return fields


def _events(path: str) -> list[dict[str, Any]]:
    """The event windows of a calendar file; a bad event is skipped with a warning naming it."""
    from workbench.data.calendar import load_events

    try:
        cal = load_events(path)
    except (OSError, ValueError) as e:
        raise UsageError(f"--events: {e}") from None
    for problem in cal.problems:
        log.warning("--events: skipped %s", problem)
    return [e.model_dump(mode="json") for e in cal.events]


def settings_from_args(args: argparse.Namespace, absolute: bool = False) -> dict[str, Any]:
    """The :data:`SETTINGS` a command line gives (None: not given); with ``absolute``, ``data`` as an
    absolute path (for a report, whose notebook may run elsewhere)."""
    out = {k: getattr(args, k, None) for k in SETTINGS}
    for key in ("data", "events") if absolute else ():
        if (path := out[key]) is not None:
            out[key] = str(Path(path).expanduser().resolve())
    return out


def flag_problems(err: ConfigError) -> str:
    """A ConfigError as one line, each problem named by the flag that sets its field."""
    from workbench.reports.report import one_line

    def named(field: str) -> str:
        key = max((k for k in FLAGS if field == k or field.startswith(k + ".")), key=len, default=None)
        return f"{FLAGS[key]} ({field})" if key else field

    return one_line(ConfigError([(named(f), v, m) for f, v, m in err.problems]))
