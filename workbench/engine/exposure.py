"""What the sessions hold and risk, computed from store frames and bars (no widgets).

Pure functions over frames (:func:`concentration`, :func:`correlation`, :func:`liquidity`,
:func:`volatility_exposure`, :func:`limit_usage`) plus two readers that gather their inputs from a
:class:`~workbench.store.Store`: :func:`active_sessions` (the guide's "Active Trading Sessions"
table) and :func:`risk_report` (the risk dashboard's numbers). Times are UTC.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from workbench.account import AccountGate, PolicyError, RiskPolicy, load_policy
from workbench.account.gaps import gap_exposure
from workbench.account.health import venue_health
from workbench.account.policy import account_of, venue_of
from workbench.account.rates import sources_loader
from workbench.account.sectors import sector_exposure
from workbench.config import SessionConfig
from workbench.domain import SessionState, utc_now
from workbench.execution.legs import market_symbol
from workbench.metrics import infer_periods_per_year

S = SessionState
#: states shown in the active-sessions table
ACTIVE_STATES = (S.REQUESTED, S.CREATED, S.STARTING, S.RUNNING, S.PAUSED, S.STOPPING, S.ORPHANED)
#: states whose runner must heartbeat (a stale heartbeat means the runner is gone)
RUNNING_STATES = (S.STARTING, S.RUNNING, S.PAUSED, S.STOPPING)
#: a wall clock: returns the current timezone-aware time (tests pass a fake one)
Clock = Callable[[], datetime]
ACTIVE_COLUMNS = ("id", "kind", "strategy", "name", "state", "pnl", "exposure", "equity", "uptime", "orphaned",
                  "heartbeat_at", "runner", "initial_balance", "last_time")
BarsLoader = Callable[[SessionConfig, str, datetime], pd.DataFrame]


def is_orphaned(state: str, heartbeat_at: Any, now: datetime, stale_after: float, *,
                lease_expires: Any = None) -> bool:
    """True if the session is marked orphaned, or should be running but its runner's lease expired
    before ``now`` (holding no lease: has not heartbeated for ``stale_after`` seconds), or was claimed
    ("created" with a lease) by a runner whose lease expired before it started. Its runner is gone;
    ``workbench host`` resumes it."""
    if state == S.ORPHANED.value:
        return True
    leased = lease_expires is not None and lease_expires == lease_expires  # not None / NaT
    if state == S.CREATED.value:  # a host claimed it, then died before starting it
        return leased and now > pd.Timestamp(lease_expires).to_pydatetime()
    if state not in {s.value for s in RUNNING_STATES}:
        return False
    if leased:
        return now > pd.Timestamp(lease_expires).to_pydatetime()
    if heartbeat_at is None or heartbeat_at != heartbeat_at:  # None / NaT
        return True
    return (now - pd.Timestamp(heartbeat_at).to_pydatetime()).total_seconds() > stale_after


def active_sessions(store: Any, *, clock: Clock = utc_now, stale_after: float = 10.0) -> pd.DataFrame:
    """One row per active session (newest first) with ``ACTIVE_COLUMNS``: P&L and exposure from the
    latest equity point, uptime since start, ``orphaned`` per :func:`is_orphaned` at ``clock()``."""
    now = clock()
    frame = store.list_sessions(states=[s.value for s in ACTIVE_STATES])
    rows = []
    for r in frame.itertuples(index=False):
        last = store.equity(r.id, last=1)
        eq = float(last["equity"].iloc[-1]) if len(last) else math.nan
        exposure = float(last["exposure"].iloc[-1]) if len(last) else math.nan
        started = r.started_at if r.started_at == r.started_at else None
        uptime = (now - started.to_pydatetime()) if started is not None else None
        rows.append({"id": r.id, "kind": r.kind, "strategy": r.strategy, "name": r.name, "state": r.state,
                     "pnl": eq - r.initial_balance if len(last) else math.nan,
                     "exposure": 0.0 if len(last) and math.isnan(exposure) else exposure, "equity": eq,
                     "uptime": uptime, "orphaned": is_orphaned(r.state, r.heartbeat_at, now, stale_after,
                                                               lease_expires=getattr(r, "lease_expires", None)),
                     "heartbeat_at": r.heartbeat_at, "runner": r.runner, "initial_balance": r.initial_balance,
                     "last_time": last.index[-1] if len(last) else None})
    return pd.DataFrame(rows, columns=list(ACTIVE_COLUMNS))


# ---- pure risk computations --------------------------------------------------------------
def concentration(values: pd.Series, equity: float) -> pd.DataFrame:
    """Per symbol: ``value``, share of total exposure and share of ``equity`` (fractions), largest first."""
    values = values[values > 0].astype(float)
    total = float(values.sum())
    out = pd.DataFrame({"value": values,
                        "share_of_exposure": values / total if total > 0 else np.nan,
                        "share_of_equity": values / equity if equity > 0 else np.nan})
    out.index.name = "symbol"
    return out.sort_values("value", ascending=False)


def correlation(closes: pd.DataFrame, min_periods: int = 10) -> pd.DataFrame:
    """Pearson correlation of the symbols' bar-to-bar returns (columns of ``closes``, aligned in time)."""
    return closes.sort_index().pct_change(fill_method=None).corr(min_periods=min_periods)


def liquidity(quantities: pd.Series, bars: Mapping[str, pd.DataFrame], window: int = 60) -> pd.DataFrame:
    """Per symbol: held ``quantity``, mean ``volume`` of the last ``window`` bars, and ``share``
    = quantity / mean bar volume (1.0 means a whole average bar's volume is needed to exit)."""
    rows = {}
    for sym, qty in quantities.items():
        vol = float(bars[sym]["volume"].iloc[-window:].mean()) if sym in bars and len(bars[sym]) else math.nan
        rows[sym] = {"quantity": float(qty), "avg_volume": vol,
                     "share": float(qty) / vol if vol and vol == vol else math.nan}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["quantity", "avg_volume", "share"])


def volatility_exposure(values: pd.Series, bars: Mapping[str, pd.DataFrame], window: int = 240) -> pd.DataFrame:
    """Per symbol: ``value``, daily ``volatility`` of returns over the last ``window`` bars (scaled
    from the bar spacing) and ``daily_move`` = value x volatility, a one-sigma day in money."""
    rows = {}
    for sym, value in values.items():
        vol = math.nan
        if sym in bars and len(bars[sym]) > 2:
            close = bars[sym]["close"].iloc[-window:]
            per_day = infer_periods_per_year(close.index) / 365.0
            vol = float(close.pct_change().std() * math.sqrt(per_day)) if per_day == per_day else math.nan
        rows[sym] = {"value": float(value), "volatility": vol, "daily_move": float(value) * vol}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["value", "volatility", "daily_move"])


def limit_usage(config: SessionConfig, values: Mapping[str, float], equity: float) -> pd.DataFrame:
    """The session's configured position limits against what it holds: ``limit``, ``used``,
    ``limit_value`` and ``usage`` (used / limit; 1.0 is at the limit). Limits that are off are left out."""
    risk = config.risk
    biggest = max(values.values(), default=0.0)
    total = float(sum(values.values()))
    rows = []
    if risk.max_position is not None:
        rows.append(("max position per symbol", biggest, risk.max_position))
    if risk.portfolio_limit is not None:
        rows.append(("portfolio limit", total, risk.portfolio_limit))
    if risk.concentration_limit is not None and equity > 0:
        rows.append(("max share of equity per symbol", biggest / equity, risk.concentration_limit))
    return pd.DataFrame([{"limit": n, "used": u, "limit_value": lv, "usage": u / lv} for n, u, lv in rows],
                        columns=["limit", "used", "limit_value", "usage"])


# ---- gathering from the store ------------------------------------------------------------------
def default_bars_loader(config: SessionConfig, symbol: str, end: datetime, bars: int = 500) -> pd.DataFrame:
    """The last ``bars`` bars of ``symbol`` up to ``end`` from the session's own data source, in the session's
    base currency (as its positions are: :func:`workbench.data.currency.to_base`)."""
    from workbench.data import SAMPLE_START
    from workbench.data.currency import load_in_base

    step = pd.Timedelta(config.data.timeframe)
    start = pd.Timestamp(end) - step * bars
    if config.data.source == "sample":  # early in the bundled sample there are fewer than `bars` bars before `end`
        start = max(start, SAMPLE_START)
    return load_in_base(config.data, symbol, config.currency, start, end)


@dataclass
class RiskReport:
    """The risk dashboard's numbers; every frame may be empty when nothing is held."""

    positions: pd.DataFrame  # session_id, symbol, quantity, avg_price, price, value
    total_exposure: float
    total_equity: float
    concentration: pd.DataFrame
    correlation: pd.DataFrame
    liquidity: pd.DataFrame
    volatility: pd.DataFrame
    limits: pd.DataFrame  # session_id, limit, used, limit_value, usage
    problems: list[str] = field(default_factory=list)  # data that could not be loaded
    accounts: pd.DataFrame = field(default_factory=pd.DataFrame)  # the account policy's limits: AccountGate.usage()
    sectors: pd.DataFrame = field(default_factory=pd.DataFrame)  # sector, value, share_of_exposure
    venues: pd.DataFrame = field(default_factory=pd.DataFrame)  # account, venue, value
    breakers: pd.DataFrame = field(default_factory=pd.DataFrame)  # session_id, state, breaker, day_pnl, drawdown
    gaps: pd.DataFrame = field(default_factory=pd.DataFrame)  # symbol, value, gaps, worst_drop, gap_loss
    events: pd.DataFrame = field(default_factory=pd.DataFrame)  # name, start, end, now (inside it), sessions


def stored_risk_state(store: Any, session_id: str) -> dict[str, Any]:
    """The risk engine's state in the session's last checkpoint ({} if none or unreadable)."""
    try:
        return dict((store.load_runner_state(session_id) or {}).get("risk") or {})
    except Exception:  # an unreadable checkpoint: nothing known yet
        return {}


def risk_report(store: Any, *, load: BarsLoader = default_bars_loader, window: int = 60,
                clock: Clock = utc_now, policy: RiskPolicy | None = None) -> RiskReport:
    """Gather positions of the active sessions, mark them at the last close of each session's own
    data up to its latest equity point, and compute the risk dashboard's numbers; the account
    limits are ``policy``'s (default: the risk policy file, :func:`workbench.account.load_policy`)."""
    sessions = active_sessions(store, clock=clock)
    pos_rows, limit_rows, problems = [], [], []
    venue_rows, breaker_rows = [], []
    timeframes: dict[str, str] = {}
    event_rows: dict[tuple[str, Any, Any], list[str]] = {}
    if policy is None:
        try:
            policy = load_policy()
        except PolicyError as e:
            problems.append(f"account limits not shown: {e}")
            policy = RiskPolicy()
    gate = AccountGate(policy)
    sources: list[tuple[Any, Any]] = []  # each session's data source and time, for the gate's missing rates
    bars: dict[str, pd.DataFrame] = {}
    total_equity = 0.0
    currencies: set[str] = set()
    for r in sessions.itertuples(index=False):
        if r.state == S.REQUESTED.value:
            continue
        row = store.get_session(r.id)
        cfg: SessionConfig | None = row["config"]
        pos = store.positions(r.id)
        pos = pos[pos["quantity"] > 0]
        total_equity += r.equity if r.equity == r.equity else 0.0
        values: dict[str, float] = {}
        marks: dict[str, float] = {}  # the gate's rates between the sessions' currencies
        for p in pos.itertuples(index=False):
            price = float(p.avg_price)
            sym = market_symbol(p.symbol)  # a leg's position (SYMBOL@leg) is the account's SYMBOL
            if cfg is not None and r.last_time is not None:
                try:
                    b = load(cfg, sym, r.last_time.to_pydatetime())
                    if len(b):
                        price = marks[sym] = float(b["close"].iloc[-1])
                        if sym not in bars or b.index[-1] > bars[sym].index[-1]:
                            bars[sym] = b
                            timeframes[sym] = cfg.data.timeframe
                except Exception as e:  # a missing data source must not hide the rest
                    problems.append(f"{r.id} {sym}: no bars ({e}); valued at entry price")
            values[sym] = values.get(sym, 0.0) + p.quantity * price
            pos_rows.append({"session_id": r.id, "symbol": sym, "quantity": float(p.quantity),
                             "avg_price": float(p.avg_price), "price": price, "value": p.quantity * price})
        if cfg is not None:
            currencies.add(cfg.currency)
            eq = r.equity if r.equity == r.equity else cfg.initial_balance
            for u in limit_usage(cfg, values, eq).to_dict("records"):
                limit_rows.append({"session_id": r.id, **u})
            for ev in cfg.time.events:  # dated entry blackouts still ahead (or under way)
                if pd.Timestamp(ev.end) > pd.Timestamp(clock()):
                    event_rows.setdefault((ev.name, ev.start, ev.end), []).append(r.id)
            risk = stored_risk_state(store, r.id)
            day_pnl = float(risk["last_equity"]) - float(risk["day_start"]) if "day_start" in risk else 0.0
            account, venue = account_of(cfg), venue_of(cfg)
            gate.report(r.id, account, venue, values, day_pnl, currency=cfg.currency, marks=marks)
            sources.append((cfg.data, r.last_time if r.last_time is not None else clock()))
            venue_rows.append({"account": account, "venue": venue, "value": sum(values.values())})
            peak = float(risk.get("peak") or 0.0)
            breaker_rows.append({"session_id": r.id, "state": r.state, "breaker": risk.get("state", "running"),
                                 "day_pnl": day_pnl, "drawdown": 1.0 - eq / peak if peak > 0 else float("nan")})
    problems += gate.load_rates(sources_loader(sources)) if sources else []
    positions = pd.DataFrame(pos_rows, columns=["session_id", "symbol", "quantity", "avg_price", "price", "value"])
    total_exposure = float(positions["value"].sum())
    if len(currencies) > 1:  # never one sum of two currencies
        problems.append(f"the sessions keep their books in {' and '.join(sorted(currencies))}: total equity and "
                        "exposure are not added up (n/a); each session's own figures are in its base currency")
        total_equity = total_exposure = math.nan
    by_symbol = positions.groupby("symbol")[["quantity", "value"]].sum()
    closes = pd.DataFrame({s: b["close"] for s, b in bars.items()})
    return RiskReport(
        positions=positions, total_exposure=total_exposure, total_equity=total_equity,
        concentration=concentration(by_symbol["value"], total_equity),
        correlation=correlation(closes) if len(bars) > 1 else pd.DataFrame(),
        liquidity=liquidity(by_symbol["quantity"], bars, window),
        volatility=volatility_exposure(by_symbol["value"], bars, window=max(window, 2)),
        limits=pd.DataFrame(limit_rows, columns=["session_id", "limit", "used", "limit_value", "usage"]),
        problems=problems, accounts=gate.usage(), sectors=_sectors(by_symbol["value"], policy.sectors),
        venues=_venues(venue_rows, venue_health(store, clock())),
        events=_events(event_rows, clock()),
        breakers=pd.DataFrame(breaker_rows, columns=["session_id", "state", "breaker", "day_pnl", "drawdown"]),
        gaps=pd.concat([gap_exposure({s: v}, bars, timeframes[s]) for s, v in by_symbol["value"].items()
                        if s in timeframes] or [gap_exposure({}, {}, "1m")], ignore_index=True))


def _events(rows: Mapping[tuple[str, Any, Any], list[str]], now: datetime) -> pd.DataFrame:
    """The event windows of the active sessions that have not ended, soonest first."""
    out = pd.DataFrame([{"name": n, "start": s, "end": e, "now": s <= now < e, "sessions": ", ".join(ids)}
                        for (n, s, e), ids in rows.items()], columns=["name", "start", "end", "now", "sessions"])
    return out.sort_values("start", kind="stable").reset_index(drop=True)


def _venues(rows: list[dict[str, Any]], health: Mapping[str, Any]) -> pd.DataFrame:
    """Exposure per account and venue, with the venue's health score (NaN: no live history)."""
    frame = pd.DataFrame(rows, columns=["account", "venue", "value"]).groupby(
        ["account", "venue"], as_index=False)["value"].sum()
    frame["health"] = [health[v].score if v in health else math.nan for v in frame["venue"]]
    return frame


def _sectors(values: pd.Series, sectors: Mapping[str, str]) -> pd.DataFrame:
    by = sector_exposure(values.to_dict(), sectors)
    total = float(by.sum())
    return pd.DataFrame({"sector": by.index, "value": by.to_numpy(),
                         "share_of_exposure": by.to_numpy() / total if total > 0 else float("nan")})
