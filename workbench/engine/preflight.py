"""Pre-flight for a live session: what to check on the exchange and in the store before arming it.

:func:`preflight` returns one :class:`Check` per question, each ``pass``, ``warn`` or ``fail`` with
what was found and what to do:

* ``key``: an API key for ``data.exchange``/``live.account`` is in the environment or the keyring;
* ``authenticated``: the exchange accepts it (a signed balance request);
* ``permissions``: the key may trade and may not withdraw, where the exchange says (Binance's account
  endpoint reports ``canTrade``/``canWithdraw``); a key that may withdraw is a warning;
* ``balance``: the session's budget (``initial_balance``) fits in the free quote currency less what the
  other live sessions on the account hold (the rule a live session's start applies);
* ``exchange status``: ``fetch_status`` is ``ok`` (maintenance fails; no such endpoint warns);
* ``market <symbol>``: the market exists and is ``active``;
* ``shorts``, ``leverage <symbol>``: a session that shorts (``direction`` short or both) or borrows
  (``margin.leverage`` above 1) trades perpetuals (``BASE/QUOTE:SETTLE``): a spot market can do neither here;
  the leverage is within the market's maximum (its first leverage bracket, ``fetch_leverage_tiers``); spot
  and perpetuals are not mixed in one session (their money is in different wallets);
* ``sizing <symbol>``: one entry of the configured sizing at the current price meets the market's
  lot size (``limits.amount``) and minimum notional (``limits.cost``);
* ``stops``: a stop-loss or trailing stop is set, or ``live.waive_stops`` gives a reason (warn);
* ``rehearsal``: a completed backtest and a paper session (completed or stopped) of the same strategy
  on the same symbols within :data:`REHEARSAL_DAYS` days, or ``live.waive_rehearsal`` gives a reason.

Checks that need what failed before them (no key: nothing signed) are left out; the failure says
what to do. Waivers are recorded as ``waiver`` events when the session starts
(:class:`workbench.engine.live.LiveSession`). Every detail passes through
:func:`workbench.secrets.redact`.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from workbench.config import SessionConfig, is_perp, quote_of
from workbench.secrets import Credentials, MissingCredentials, load_credentials, redact

Status = Literal["pass", "warn", "fail"]
REHEARSAL_DAYS = 30
#: makes the exchange client: (config, credentials or None) -> a ccxt.async_support exchange
ExchangeFactory = Callable[[SessionConfig, "Credentials | None"], Any]


@dataclass(frozen=True)
class Check:
    """One pre-flight answer: ``name``, ``status`` (pass/warn/fail), what was found, what to do."""

    name: str
    status: Status
    detail: str
    todo: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def failed(checks: list[Check]) -> list[Check]:
    """The checks that fail (a live session should not be created while there are any)."""
    return [c for c in checks if c.status == "fail"]


def default_exchange(config: SessionConfig, credentials: Credentials | None) -> Any:
    """The session's own client (:func:`workbench.engine.ccxt_broker.make_async_exchange`)."""
    from workbench.engine.ccxt_broker import make_async_exchange

    return make_async_exchange(config.data.exchange, credentials, sandbox=config.live.sandbox)


def preflight(config: SessionConfig, store: Any = None, *, exchange: ExchangeFactory | None = None,
              env: Mapping[str, str] | None = None, use_keyring: bool = True,
              now: datetime | None = None) -> list[Check]:
    """Run the pre-flight checks for ``config`` (see the module doc); ``store`` for the rehearsal check
    (None: that check warns). ``exchange`` makes the ccxt client from the config and the credentials
    (default :func:`default_exchange`);
    ``env``/``use_keyring`` say where keys are looked up. Blocking: runs its own event loop in a thread,
    so it can be called from a notebook whose loop is running."""
    out: list[list[Check]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            out.append(asyncio.run(preflight_async(config, store, exchange=exchange, env=env,
                                                   use_keyring=use_keyring, now=now)))
        except BaseException as e:  # re-raised in the caller's thread
            errors.append(e)

    worker = threading.Thread(target=run, name="preflight", daemon=True)
    worker.start()
    worker.join()
    if errors:
        raise errors[0]
    return out[0]


async def preflight_async(config: SessionConfig, store: Any = None, *, exchange: ExchangeFactory | None = None,
                          env: Mapping[str, str] | None = None, use_keyring: bool = True,
                          now: datetime | None = None) -> list[Check]:
    """:func:`preflight` on the running loop."""
    checks: list[Check] = []
    venue, account = config.data.exchange, config.live.account
    credentials: Credentials | None = None
    try:
        credentials = load_credentials(venue, account, env=env, use_keyring=use_keyring)
        checks.append(Check("key", "pass", f"an API key for {venue}:{account} was found"))
    except MissingCredentials as e:
        checks.append(Check("key", "fail", str(e), "add the key and secret (see docs/live-trading.md, Keys)"))
    client = (exchange or default_exchange)(config, credentials)
    try:
        if credentials is not None:
            checks += await _account_checks(client, config, store)
        checks += await _market_checks(client, config)
        checks += await _derivative_checks(client, config, credentials is not None)
    finally:
        await client.close()
    checks.append(_stops(config))
    checks.append(_rehearsal(config, store, now or datetime.now(timezone.utc)))
    return [Check(c.name, c.status, redact(c.detail), redact(c.todo)) for c in checks]


def _num(x: float) -> str:
    """A quantity without exponent or trailing zeros: 0.00001, 0.051."""
    return f"{x:.8f}".rstrip("0").rstrip(".")


def _why(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


async def _account_checks(client: Any, config: SessionConfig, store: Any) -> list[Check]:
    import ccxt

    venue = config.data.exchange
    try:  # the futures wallet for perpetuals
        balance = await client.fetch_balance({"type": "swap"} if any(is_perp(s) for s in config.symbols) else {})
    except ccxt.AuthenticationError as e:
        return [Check("authenticated", "fail", f"{venue} refused the key: {_why(e)}",
                      "check the key and secret, the key's IP allow-list and that it is enabled for spot trading")]
    except ccxt.BaseError as e:
        return [Check("authenticated", "fail", f"could not ask {venue} for the account: {_why(e)}",
                      "check the network and the exchange's status, then run the pre-flight again")]
    out = [Check("authenticated", "pass", f"{venue} accepted the key (account balance read)")]
    info = balance.get("info") if isinstance(balance.get("info"), dict) else {}
    can_trade, can_withdraw = info.get("canTrade"), info.get("canWithdraw")
    if can_trade is False:
        out.append(Check("permissions", "fail", "the key may not trade (canTrade false)",
                         "enable spot trading for this key in the exchange's API management"))
    elif can_withdraw is True:
        out.append(Check("permissions", "warn", "the key may trade and also withdraw (canWithdraw true)",
                         "use a key without withdrawal permission for trading sessions"))
    elif can_trade is None and can_withdraw is None:
        out.append(Check("permissions", "warn", f"{venue} does not report the key's permissions",
                         "check on the exchange that the key may trade and may not withdraw"))
    else:
        out.append(Check("permissions", "pass", "the key may trade and may not withdraw"))
    out.append(_balance(balance, config, store))
    return out


def _balance(balance: Mapping[str, Any], config: SessionConfig, store: Any) -> Check:
    """The start's budget rule (:func:`workbench.engine.brokers.account.budget_problem`): the free quote
    balance less what the other live sessions on the account hold must cover ``initial_balance``."""
    from workbench.engine.brokers.account import budget_problem, other_claims, quote_of

    try:
        quote = quote_of(config)
    except ValueError as e:
        return Check("balance", "fail", str(e), "trade symbols of one quote currency in a live session")
    free = float((balance.get("free") or {}).get(quote) or 0.0)
    others = other_claims(store, config) if store is not None else {}
    account = f"{config.data.exchange}:{config.live.account}"
    problem = budget_problem(config.initial_balance, free, others, quote, account)
    if problem:
        what, _, todo = problem.partition(". ")
        return Check("balance", "fail", what, todo)
    held = f", {sum(others.values()):,.2f} held by other live sessions" if others else ""
    return Check("balance", "pass", f"budget {config.initial_balance:,.2f} {quote} of {free:,.2f} {quote} "
                                    f"free{held}")


async def _market_checks(client: Any, config: SessionConfig) -> list[Check]:
    import ccxt

    venue = config.data.exchange
    out: list[Check] = []
    try:
        status = await client.fetch_status()
        state = status.get("status")
        out.append(Check("exchange status", "pass", f"{venue} reports status {state!r}") if state == "ok" else
                   Check("exchange status", "fail", f"{venue} reports status {state!r}",
                         "wait until the exchange is out of maintenance"))
    except ccxt.NotSupported:
        out.append(Check("exchange status", "warn", f"{venue} has no status endpoint",
                         "check the exchange's status page before starting"))
    except ccxt.BaseError as e:
        out.append(Check("exchange status", "warn", f"status not known: {_why(e)}",
                         "check the exchange's status page before starting"))
    try:
        markets = await client.load_markets()
    except ccxt.BaseError as e:
        return [*out, Check("markets", "fail", f"could not load {venue}'s markets: {_why(e)}",
                            "check the network and the exchange id (data.exchange), then run again")]
    for symbol in config.symbols:
        market = markets.get(symbol)
        if market is None:
            out.append(Check(f"market {symbol}", "fail", f"{venue} has no market {symbol}",
                             "fix the symbol (BASE/QUOTE as the exchange lists it)"))
            continue
        active = market.get("active")
        if active is False:
            raw = (market.get("info") or {}).get("status", "not active")
            out.append(Check(f"market {symbol}", "fail", f"{symbol} is not trading now (status {raw})",
                             "wait until the market trades again, or remove the symbol"))
            continue
        out.append(Check(f"market {symbol}", "pass" if active else "warn",
                         f"{symbol} is active" if active else f"{venue} does not say whether {symbol} trades",
                         "" if active else "check the market on the exchange"))
        out.append(await _sizing(client, config, symbol, market))
    return out


async def _derivative_checks(client: Any, config: SessionConfig, signed: bool) -> list[Check]:
    """Shorts and leverage need perpetuals; the leverage within each market's maximum (needs the key:
    Binance's leverage brackets are a signed request)."""
    import ccxt

    perps = [s for s in config.symbols if is_perp(s)]
    spot = [s for s in config.symbols if not is_perp(s)]
    direction = str(getattr(config, "direction", "long"))
    leverage = float(getattr(getattr(config, "margin", None), "leverage", None) or 1.0)
    out: list[Check] = []
    if perps and spot:
        out.append(Check("markets", "fail", f"spot {', '.join(spot)} and perpetual {', '.join(perps)} in one session "
                         "(their money is in different wallets)", "split them into two sessions"))
    if direction != "long" and spot:
        out.append(Check("shorts", "fail", f"direction {direction!r} shorts, but {', '.join(spot)} is a spot market: "
                         "a live session cannot sell what it does not hold there",
                         f"trade the perpetual instead, e.g. {spot[0]}:{spot[0].split('/')[1]}, or set direction "
                         "'long'"))
    elif direction != "long":
        out.append(Check("shorts", "pass", f"direction {direction!r} on perpetuals: a sell from flat opens a short"))
    if leverage > 1.0 and spot:
        out.append(Check("leverage", "fail", f"margin.leverage {leverage:g} on spot {', '.join(spot)}: live spot "
                         "trading here does not borrow", "trade perpetuals (BASE/QUOTE:SETTLE) or set leverage 1"))
    if not (perps and signed):
        return out
    try:
        tiers = await client.fetch_leverage_tiers(perps)
    except ccxt.BaseError as e:
        return [*out, Check("leverage", "warn", f"the markets' leverage limits are not known: {_why(e)}",
                            "check the maximum leverage on the exchange")]
    for s in perps:
        top = max((float(t.get("maxLeverage") or 0.0) for t in tiers.get(s) or []), default=0.0)
        if not top:
            out.append(Check(f"leverage {s}", "warn", f"{config.data.exchange} gives no leverage limit for {s}",
                             "check the maximum leverage on the exchange"))
        elif leverage > top:
            out.append(Check(f"leverage {s}", "fail", f"margin.leverage {leverage:g} is above {s}'s maximum {top:g}x",
                             f"lower margin.leverage to at most {top:g}"))
        else:
            out.append(Check(f"leverage {s}", "pass", f"leverage {leverage:g} within {s}'s maximum {top:g}x"))
    return out


def entry_size(config: SessionConfig, price: float) -> tuple[float, float]:
    """(quantity, notional) of one entry of the configured sizing at ``price`` with the starting
    equity (percent_equity: of the buying power, ``margin.leverage`` x it), capped by ``risk.max_position``."""
    from workbench.execution.ledger import Portfolio

    mode, value = config.sizing.mode, config.sizing.value
    leverage = float(getattr(config.margin, "leverage", None) or 1.0)
    power = Portfolio(config.initial_balance).buying_power(leverage)  # the execution core's rule 16
    notional = (value if mode == "fixed_amount" else value * power if mode == "percent_equity" else value * price)
    if config.risk.max_position is not None:
        notional = min(notional, config.risk.max_position)
    return notional / price, notional


async def _sizing(client: Any, config: SessionConfig, symbol: str, market: Mapping[str, Any]) -> Check:
    import ccxt

    name = f"sizing {symbol}"
    try:
        price = float((await client.fetch_ticker(symbol)).get("last") or 0.0)
    except ccxt.BaseError as e:
        return Check(name, "warn", f"no price to size an entry: {_why(e)}", "run the pre-flight again")
    if not price > 0:
        return Check(name, "warn", f"{symbol} has no last price to size an entry", "run the pre-flight again")
    qty, notional = entry_size(config, price)
    limits = market.get("limits") or {}
    min_qty = (limits.get("amount") or {}).get("min")
    max_qty = (limits.get("amount") or {}).get("max")
    min_cost = (limits.get("cost") or {}).get("min")
    try:
        rounded = float(client.amount_to_precision(symbol, qty))
    except ccxt.BaseError:  # below the step: rounds to nothing
        rounded = 0.0
    quote = quote_of(symbol)
    what = f"an entry is {_num(qty)} {symbol.split('/')[0]} ≈ {notional:,.2f} {quote} at {price:,.2f}"
    if min_qty is not None and rounded < float(min_qty):
        return Check(name, "fail", f"{what}: below the lot size minimum {_num(float(min_qty))}",
                     f"raise sizing so that an entry is at least {_num(float(min_qty))} "
                     f"(≈ {float(min_qty) * price:,.2f} {quote})")
    if max_qty is not None and qty > float(max_qty):
        return Check(name, "fail", f"{what}: above the lot size maximum {_num(float(max_qty))}", "lower sizing")
    if min_cost is not None and notional < float(min_cost):
        return Check(name, "fail", f"{what}: below the minimum notional {float(min_cost):,.2f} {quote}",
                     f"raise sizing (or max_position) so that an entry is worth at least {float(min_cost):,.2f} "
                     f"{quote}; exits of part of a position may be refused below it too")
    return Check(name, "pass", f"{what}: within the lot size and minimum notional")


def _stops(config: SessionConfig) -> Check:
    r = config.risk
    if r.stop_loss is not None or r.trailing_stop is not None:
        parts = [f"stop-loss {r.stop_loss:.2%}" if r.stop_loss else "", f"trailing {r.trailing_stop:.2%}"
                 if r.trailing_stop else ""]
        return Check("stops", "pass", " and ".join(p for p in parts if p) + " set")
    if config.live.waive_stops:
        return Check("stops", "warn", f"no stop; waived: {config.live.waive_stops}",
                     "the waiver is recorded when the session starts")
    return Check("stops", "fail", "no stop-loss or trailing stop",
                 "set risk.stop_loss (or risk.trailing_stop), or give a reason in live.waive_stops")


def _rehearsal(config: SessionConfig, store: Any, now: datetime) -> Check:
    if config.live.waive_rehearsal:
        return Check("rehearsal", "warn", f"not checked; waived: {config.live.waive_rehearsal}",
                     "the waiver is recorded when the session starts")
    if store is None:
        return Check("rehearsal", "warn", "no store given to look for earlier runs",
                     "run the pre-flight with the store (--db)")
    since = now - timedelta(days=REHEARSAL_DAYS)
    wanted = set(config.symbols)
    found = {}
    for kind, states in (("backtest", ["completed"]), ("paper", ["completed", "stopped"])):
        rows = store.list_sessions(kind=kind, strategy=config.strategy, states=states, since=since)
        found[kind] = next((r.id for r in rows.itertuples(index=False) if wanted <= set(r.symbols)), None)
    missing = [k for k, sid in found.items() if sid is None]
    if missing:
        return Check("rehearsal", "fail",
                     f"no completed {' and no '.join(missing)} run of {config.strategy} on {', '.join(config.symbols)} "
                     f"in the last {REHEARSAL_DAYS} days",
                     "run a backtest and a paper session of this strategy and symbols first, or give a reason in "
                     "live.waive_rehearsal")
    return Check("rehearsal", "pass", f"backtest {found['backtest']} and paper session {found['paper']} within "
                                      f"{REHEARSAL_DAYS} days")
