"""A live broker for any ccxt exchange (``ccxt.async_support``): orders, fills, balances, positions.

Every request goes through the one retrier (:mod:`workbench.retry`). Submission is exactly-once
under Binance's rule that a client order id is unique among OPEN orders only (a repeat is a new
order once the earlier one is filled or canceled): each order carries an exchange client order id
derived from the session id and the order's sequence key, ``wb<session id>-<16 hex>``, 31 characters
(Binance allows 36). When a submission's outcome is unknown (timeout, dropped connection, lost
response, 5xx) the broker looks the order up by that id; if the exchange does not have it, the
request may still land until the exchange's clock passes its timestamp plus ``recvWindow``, so the
broker waits until then (:meth:`CcxtBroker.landing_deadline`: recvWindow, the measured clock offset
and its error) and looks once more before it resends. A "duplicate order" refusal is answered by the
same lookup. Refusals (InvalidOrder, InsufficientFunds, AuthenticationError) are raised at once.

Time: :meth:`CcxtBroker.sync_time` measures the exchange's clock (``fetch_time``) and sets ccxt's
``timeDifference`` so that signed requests carry the exchange's time. A -1021 refusal (ccxt
``InvalidNonce``: timestamp outside recvWindow) is not a network blip: it is a ``clock_skew`` event,
``clock_ok`` is False (the exchange broker pauses entries) and the call is sent again only after a
resync succeeds (``clock_resynced``).

Perpetual swaps (symbols ``BASE/QUOTE:SETTLE``, ccxt's unified swap names; :attr:`CcxtBroker.perps`):
orders go to the derivatives market of the same client (Binance: ``/fapi``, one-way position mode), a
short is a sell without holding the base, a close that only reduces a position is sent ``reduceOnly``
(:meth:`CcxtBroker.reduce_only`), the account is the futures wallet (:meth:`CcxtBroker.wallet`), positions
are the exchange's signed positions (``fetch_positions``; negative: short) and funding payments are read
with ``fetch_funding_history`` (:meth:`CcxtBroker.funding_payments`).
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import ccxt

from workbench.config import base_of, is_perp, quote_of
from workbench.domain import Fill, Order, OrderStatus, OrderType, Side
from workbench.retry import RetryPolicy, is_transient, retry_async

STATUS = {"open": OrderStatus.NEW, "closed": OrderStatus.FILLED, "canceled": OrderStatus.CANCELED,
          "cancelled": OrderStatus.CANCELED, "expired": OrderStatus.CANCELED, "rejected": OrderStatus.REJECTED}
EventSink = Callable[[str, str, dict[str, Any]], None]
#: the broker's retry policy unless one is given (RetryPolicy is frozen, so one shared instance is safe)
DEFAULT_POLICY = RetryPolicy(retries=5, base=0.5, cap=10.0)
DEFAULT_RECV_WINDOW_MS = 5000  # Binance's recvWindow when a signed request sends none
LANDING_MARGIN_MS = 250  # slack on top of recvWindow + clock offset before a request counts as dead
UNMEASURED_ERROR_MS = 1000  # clock error bound before any sync: Binance refuses requests > 1 s ahead
MAX_RESYNCS = 3  # -1021 refusals of one call, each followed by a resync, before it is raised


def make_async_exchange(exchange_id: str, credentials: Any = None, *, sandbox: bool = False,
                        **options: Any) -> Any:
    """A ``ccxt.async_support`` exchange by id, rate limiting on; keys from a
    :class:`workbench.secrets.Credentials`; ``sandbox`` switches to the testnet (``set_sandbox_mode``).
    Signed requests carry Binance's default recvWindow (5000 ms, not ccxt's 10 s) unless
    ``options={"recvWindow": ...}`` says otherwise: an order whose outcome is unknown waits that long
    before it is looked up for the last time and resent."""
    import ccxt.async_support as ccxt_async

    if exchange_id not in ccxt_async.exchanges:
        raise ValueError(f"unknown exchange {exchange_id!r}; "
                         "use a ccxt id such as 'binance' or 'kraken' (ccxt.exchanges)")
    cfg = {"enableRateLimit": True, **options, **(credentials.ccxt_config() if credentials is not None else {})}
    client = getattr(ccxt_async, exchange_id)(cfg)
    if "recvWindow" in client.options and "recvWindow" not in (options.get("options") or {}):
        client.options["recvWindow"] = DEFAULT_RECV_WINDOW_MS
    if sandbox:
        client.set_sandbox_mode(True)
    return client


def _dt(ms: Any) -> datetime:
    return datetime.fromtimestamp((ms or 0) / 1000.0, tz=timezone.utc)



def exchange_client_id(session_id: str, client_id: str) -> str:
    """The client order id a session's order has on the exchange: ``wb`` + session id + a hash of the
    session's own client id (<= 36 chars, what Binance allows)."""
    return f"wb{session_id[:12]}-" + hashlib.blake2b(client_id.encode(), digest_size=8).hexdigest()

class CcxtBroker:
    """Orders on a real (or loopback) exchange through an async ccxt client. See the module docstring."""

    def __init__(self, exchange: Any, session_id: str = "", *, policy: RetryPolicy = DEFAULT_POLICY,
                 on_event: EventSink | None = None):
        self.exchange = exchange
        self.session_id = session_id
        self.policy = policy
        self.on_event = on_event
        self._markets_loaded = False
        self.clock_offset_ms: float | None = None  # the exchange's clock minus the host's, last measured
        self.clock_error_ms = float(UNMEASURED_ERROR_MS)  # half the round trip of that measurement
        self.clock_ok = True  # False after a -1021 refusal until a resync succeeds (entries pause)
        self.third_fees: dict[str, tuple[str, float]] = {}  # fill id -> (asset, amount) of fees not in quote/base
        self.perps: list[str] = []  # the session's perpetual swap symbols (their account is the futures wallet)
        #: is this order a conditional one (a perpetual's protective stop: Binance's algo orders, which ccxt
        #: reaches with ``trigger``; sent as a market order with its trigger price)? Set by the exchange broker.
        self.conditional: Callable[[Order], bool] = lambda order: False

    def __repr__(self) -> str:  # never shows the client's keys
        return f"<CcxtBroker {getattr(self.exchange, 'id', '?')} session={self.session_id or '-'}>"

    # ---- plumbing ------------------------------------------------------------------------------
    def _event(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        if self.on_event is not None:
            self.on_event(kind, message, data or {})

    async def call(self, method: str, *args: Any, policy: RetryPolicy | None = None, **kwargs: Any) -> Any:
        """``await exchange.<method>(*args, **kwargs)`` through the retrier."""
        def note(attempt: int, error: BaseException, delay: float) -> None:
            self._event("exchange_retry", f"{method}: {type(error).__name__}; retry {attempt + 1} in {delay:.2f}s",
                        {"method": method, "error": type(error).__name__})

        resyncs = 0
        while True:
            try:
                return await retry_async(self.exchange, getattr(self.exchange, method), *args,
                                         policy=policy or self.policy, on_retry=note, **kwargs)
            except ccxt.InvalidNonce as e:
                resyncs += 1
                if resyncs > MAX_RESYNCS:
                    raise
                await self.clock_skewed(method, e, policy)

    # ---- time ----------------------------------------------------------------------------------
    @property
    def recv_window_ms(self) -> int:
        """The recvWindow signed requests carry (ccxt option ``recvWindow``; Binance's 5000 ms if none)."""
        rw = (self.exchange.options or {}).get("recvWindow")
        return int(rw) if rw else DEFAULT_RECV_WINDOW_MS

    def request_ms(self) -> int:
        """The timestamp ccxt stamps on a signed request sent now: the host's clock minus ``timeDifference``."""
        return int(self.exchange.milliseconds()) - int((self.exchange.options or {}).get("timeDifference") or 0)

    def landing_deadline(self, stamp_ms: int) -> float:
        """Host-clock ms after which a request stamped ``stamp_ms`` can no longer be accepted: the exchange
        takes it while its clock is within ``recvWindow`` of the stamp, so stamp + recvWindow, moved by the
        measured clock offset (the host's clock minus the exchange's) and its error, plus a margin."""
        host_minus_exchange = -(self.clock_offset_ms or 0.0)
        return stamp_ms + self.recv_window_ms + host_minus_exchange + self.clock_error_ms + LANDING_MARGIN_MS

    async def sync_time(self, policy: RetryPolicy | None = None) -> float | None:
        """Measure the exchange's clock (``fetch_time``, retried) and stamp signed requests with it (ccxt's
        ``timeDifference``); returns the offset (exchange minus host, ms), or None if the exchange has no
        time endpoint. A success after a -1021 clears the pause (a ``clock_resynced`` event)."""
        if not self.exchange.has.get("fetchTime"):
            return None
        t0 = self.exchange.milliseconds()
        server = await retry_async(self.exchange, self.exchange.fetch_time, policy=policy or self.policy)
        t1 = self.exchange.milliseconds()
        offset = float(server) - (t0 + t1) / 2.0
        self.clock_offset_ms, self.clock_error_ms = offset, (t1 - t0) / 2.0
        self.exchange.options["timeDifference"] = round(-offset)  # ccxt's nonce(): host ms - timeDifference
        if not self.clock_ok:
            self.clock_ok = True
            self._event("clock_resynced", f"clock resynced with {self.exchange.id}: the exchange is {offset:+.0f} ms "
                        "from this host; entries resume", {"offset_ms": round(offset)})
        return offset

    async def clock_skewed(self, method: str, error: BaseException, policy: RetryPolicy | None = None) -> None:
        """A -1021 refusal: a ``clock_skew`` event, entries paused (``clock_ok`` False), then a resync
        (retried per ``policy``; raises if it gives up, the pause stays)."""
        self.clock_ok = False
        self._event("clock_skew", f"{method}: {self.exchange.id} refused the request's timestamp (outside "
                    f"recvWindow {self.recv_window_ms} ms, -1021); entries paused until the clock is resynced",
                    {"method": method, "error": type(error).__name__, "offset_ms": self.clock_offset_ms})
        await self.sync_time(policy)

    async def load_markets(self) -> dict[str, Any]:
        """Markets (once; retried)."""
        if not self._markets_loaded:
            await self.call("load_markets")
            self._markets_loaded = True
        return self.exchange.markets

    async def close(self) -> None:
        """Close the client's HTTP session."""
        await self.exchange.close()

    @property
    def prefix(self) -> str:
        """The start of every client order id of this session."""
        if not self.session_id:
            raise RuntimeError("the broker has no session id; set broker.session_id before sending orders")
        return f"wb{self.session_id[:12]}-"

    def client_order_id(self, order: Order) -> str:
        """The exchange client order id of ``order`` (:func:`exchange_client_id`)."""
        return self.prefix + exchange_client_id(self.session_id, order.client_id).removeprefix(self.prefix)

    def amount(self, symbol: str, quantity: float) -> float:
        """``quantity`` rounded down to the market's lot step."""
        return float(self.exchange.amount_to_precision(symbol, quantity))

    def min_amount(self, symbol: str) -> float:
        m = self.exchange.markets.get(symbol, {})
        return float(((m.get("limits") or {}).get("amount") or {}).get("min") or 0.0)

    # ---- orders --------------------------------------------------------------------------------
    async def lookup(self, order: Order, policy: RetryPolicy | None = None) -> dict[str, Any] | None:
        """The exchange's view of ``order`` by its client order id, or None if the exchange never got it."""
        try:
            return await self.call("fetch_order", None, order.symbol, {"clientOrderId": self.client_order_id(order),
                                                                       **self.order_params(order)}, policy=policy)
        except ccxt.OrderNotFound:
            return None

    async def submit(self, order: Order, *, policy: RetryPolicy | None = None,
                     params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send ``order`` once and return the exchange's order (see the module docstring for exactly-once).
        Transient failures are retried per ``policy`` (default: the broker's); before any resend the order
        is looked up, and if absent, looked up again once every earlier send can no longer land.
        ``params``: more ccxt ``create_order`` params (e.g. ``stopLossPrice`` for a protective stop)."""
        await self.load_markets()
        policy = policy or self.policy
        cid = self.client_order_id(order)
        amount = self.amount(order.symbol, order.remaining)
        if not amount > 0:
            raise ccxt.InvalidOrder(
                f"{order.symbol}: quantity {order.remaining:g} rounds to 0 at the market's lot size")
        price = order.limit_price if order.type is OrderType.LIMIT else None
        otype = order.type.value
        if self.conditional(order):  # rests on the exchange, triggers a market order (params: its trigger)
            otype, price = OrderType.MARKET.value, None
        attempt = resyncs = 0
        unknown: list[int] = []  # request stamps of sends whose outcome is unknown (they may still land)
        while True:
            stamp = self.request_ms()
            try:
                return await self.exchange.create_order(order.symbol, otype, order.side.value, amount,
                                                        price, {**(params or {}), "clientOrderId": cid})
            except ccxt.InvalidNonce as e:  # -1021: refused (never placed); resync, then send again
                resyncs += 1
                if resyncs > MAX_RESYNCS:
                    raise
                await self.clock_skewed("create_order", e, policy)
                continue
            except ccxt.InvalidOrder as e:
                if "duplicate" not in str(e).lower():
                    raise
                found = await self.lookup(order, policy)  # it did reach the exchange earlier (and is still open)
                if found is None:
                    raise
                self._recovered(order, f"the exchange already had {cid}")
                return found
            except Exception as e:
                if not is_transient(e):
                    raise
                if not isinstance(e, ccxt.DDoSProtection):  # a rate-limit refusal placed nothing
                    unknown.append(stamp)
                found = await self.lookup(order, policy)  # outcome unknown: never resubmit before looking
                if found is None and unknown:
                    found = await self._look_after_landing(order, max(unknown), e, policy)
                    unknown.clear()  # none of those sends can land any more
                if found is not None:
                    self._recovered(order, f"the exchange accepted it though the answer was lost ({type(e).__name__})")
                    return found
                if policy.retries is not None and attempt >= policy.retries:
                    e.add_note(f"gave up after {attempt} retries; the exchange does not have order {cid}")
                    raise
                d = policy.delay(attempt, e, self.exchange)
                self._event("exchange_retry", f"create_order {order.symbol}: {type(e).__name__}; not on the exchange, "
                            f"resending in {d:.2f}s", {"client_id": order.client_id, "error": type(e).__name__})
                await asyncio.sleep(d)
                attempt += 1

    async def _look_after_landing(self, order: Order, stamp: int, error: BaseException,
                                  policy: RetryPolicy | None = None) -> dict[str, Any] | None:
        """Wait until a send stamped ``stamp`` can no longer land (:meth:`landing_deadline`), then look
        ``order`` up once more."""
        wait = (self.landing_deadline(stamp) - self.exchange.milliseconds()) / 1000.0
        if wait > 0:
            self._event("order_unknown", f"{order.client_id}: {type(error).__name__}, not on the exchange yet; it may "
                        f"still land within recvWindow: looking again in {wait:.2f}s before any resend",
                        {"client_id": order.client_id, "error": type(error).__name__, "wait_s": round(wait, 3)})
            await asyncio.sleep(wait)
        return await self.lookup(order, policy)

    def _recovered(self, order: Order, why: str) -> None:
        self._event("order_recovered", f"{order.client_id}: {why}", {"client_id": order.client_id})

    async def fetch(self, order: Order, exchange_order: dict[str, Any] | None = None) -> dict[str, Any]:
        """The exchange's current view of ``order`` (by exchange id if known, else client id)."""
        if exchange_order is not None and exchange_order.get("id"):
            return await self.call("fetch_order", exchange_order["id"], order.symbol, self.order_params(order))
        found = await self.lookup(order)
        if found is None:
            raise ccxt.OrderNotFound(f"order {self.client_order_id(order)} is not on the exchange")
        return found

    async def fills(self, order: Order, exchange_order: dict[str, Any]) -> list[Fill]:
        """The exchange's fills (trades) of ``order``, as :class:`Fill` with ids ``<exchange>:<trade id>`` (a
        conditional order's: those of the order it triggered, Binance's ``actualOrderId``)."""
        oid = exchange_order["id"]
        if self.conditional(order):
            oid = (exchange_order.get("info") or {}).get("actualOrderId")
            if not oid:
                return []  # not triggered: no trades
        trades = await self.call("fetch_my_trades", order.symbol, None, None, {"orderId": oid})
        out = []
        for t in trades:
            fee = t.get("fee") or {}
            commission = float(fee.get("cost") or 0.0)
            base, quote = base_of(order.symbol), quote_of(order.symbol)
            currency = fee.get("currency") or quote
            if currency == base:  # fee taken in the base asset: value it in quote
                commission *= float(t["price"])
            elif currency != quote and commission:  # a third asset (BNB): at its price at the fill's time
                self.third_fees[f"{self.exchange.id}:{t['id']}"] = (currency, commission)
                commission *= await self.price_at(currency, quote, t.get("timestamp"))
            out.append(Fill(client_id=order.client_id, symbol=order.symbol, side=Side(t["side"]),
                            quantity=float(t["amount"]), price=float(t["price"]), commission=commission,
                            slippage=0.0, time=_dt(t.get("timestamp")),
                            fill_id=f"{self.exchange.id}:{t['id']}", reason=order.reason))
        return sorted(out, key=lambda f: f.time)

    async def price_at(self, asset: str, quote: str, ms: int | None) -> float:
        """``asset``'s price in ``quote`` at ``ms`` (exchange time): the open of the 1-minute candle holding
        it (the ticker's last price if ``ms`` is unknown). 0 with a ``fee_unpriced`` event if the exchange
        has no ``asset/quote`` market."""
        symbol = f"{asset}/{quote}"
        await self.load_markets()
        if symbol not in self.exchange.markets:
            self._event("fee_unpriced", f"a fee was charged in {asset}, but {self.exchange.id} has no {symbol} "
                        f"market to value it in {quote}: booked as 0", {"asset": asset, "quote": quote})
            return 0.0
        if ms is not None:
            rows = await self.call("fetch_ohlcv", symbol, "1m", int(ms) // 60_000 * 60_000, 1)
            if rows:
                return float(rows[0][1])
        return float((await self.call("fetch_ticker", symbol))["last"])

    async def cancel(self, order: Order, exchange_order: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Cancel ``order``; None if the exchange no longer has it open."""
        more = self.order_params(order)
        try:
            if exchange_order is not None and exchange_order.get("id"):
                return await self.call("cancel_order", exchange_order["id"], order.symbol, more)
            return await self.call("cancel_order", None, order.symbol, {"clientOrderId": self.client_order_id(order),
                                                                        **more})
        except ccxt.OrderNotFound:
            return None

    async def open_orders(self, symbols: list[str], *, policy: RetryPolicy | None = None) -> list[dict[str, Any]]:
        """Open orders of this session (client ids with its prefix) on ``symbols``."""
        out: list[dict[str, Any]] = []
        for s in symbols:
            rows = await self.call("fetch_open_orders", s, policy=policy)
            if is_perp(s):  # and its conditional (algo) orders, which Binance lists apart
                rows += await self.call("fetch_open_orders", s, None, None, {"trigger": True}, policy=policy)
            out += [o for o in rows if str(o.get("clientOrderId") or "").startswith(self.prefix)]
        return out

    async def cancel_all(self, symbols: list[str], *, policy: RetryPolicy | None = None) -> list[dict[str, Any]]:
        """Cancel this session's open orders on ``symbols``; returns the canceled orders."""
        done = []
        for o in await self.open_orders(symbols, policy=policy):
            algo = {"trigger": True} if "algoId" in (o.get("info") or {}) else {}
            with contextlib.suppress(ccxt.OrderNotFound):
                done.append(await self.call("cancel_order", o["id"], o["symbol"], algo, policy=policy))
        return done

    # ---- account -------------------------------------------------------------------------------
    async def wallet(self, perps: bool | None = None, *, policy: RetryPolicy | None = None) -> dict[str, Any]:
        """The ccxt balance of the account the session trades in: spot, or the futures (swap) wallet when
        it trades perpetuals (``perps``; default: whether :attr:`perps` lists any)."""
        swap = bool(self.perps) if perps is None else perps
        return dict(await self.call("fetch_balance", {"type": "swap"} if swap else {}, policy=policy))

    async def balances(self, *, policy: RetryPolicy | None = None) -> dict[str, float]:
        """Total balance per asset (non-zero only). With perpetuals: the futures wallet balance per settle
        asset (deposits + realized P&L - fees + funding; not the unrealized P&L) and each perpetual's signed
        position under its symbol."""
        bal = await self.wallet(policy=policy)
        if not self.perps:
            return {a: float(v) for a, v in (bal.get("total") or {}).items() if v}
        info = bal.get("info")
        assets = (info.get("assets") if isinstance(info, dict) else None) or []
        if assets:  # Binance: walletBalance excludes the unrealized P&L, as the session's cash-at-entry does
            out = {str(a.get("asset")): float(a.get("walletBalance") or 0.0) for a in assets}
        else:
            out = {a: float(v) for a, v in (bal.get("total") or {}).items() if v}
        out.update(await self.positions(self.perps, policy=policy))
        return {k: v for k, v in out.items() if v}

    async def positions(self, symbols: list[str], *, policy: RetryPolicy | None = None) -> dict[str, float]:
        """Each symbol's position: a spot symbol's base-asset balance; a perpetual's signed contracts
        (negative: short) from ``fetch_positions``."""
        perps = [s for s in symbols if is_perp(s)]
        out: dict[str, float] = {s: 0.0 for s in perps}
        if perps:
            for p in await self.call("fetch_positions", perps, policy=policy):
                if p.get("symbol") in out:
                    size = float(p.get("contracts") or 0.0) * float(p.get("contractSize") or 1.0)
                    out[p["symbol"]] += -size if p.get("side") == "short" else size
        spot = [s for s in symbols if not is_perp(s)]
        if spot:
            bal = await self.call("fetch_balance", policy=policy)
            total = bal.get("total") or {}
            out.update({s: float(total.get(base_of(s)) or 0.0) for s in spot})
        return out

    async def set_leverage(self, symbol: str, leverage: float) -> int:
        """Set ``symbol``'s leverage on the exchange to ``leverage`` rounded up to a whole number (Binance
        takes integers; the exchange then asks no more margin than the session's own rule); returns it."""
        lev = max(1, int(-(-leverage // 1)))
        await self.load_markets()
        await self.call("set_leverage", lev, symbol)
        return lev

    async def funding_payments(self, symbol: str, since_ms: int | None = None) -> list[dict[str, Any]]:
        """Funding paid (negative) or received on ``symbol`` since ``since_ms`` (exchange time), oldest first:
        ``{"id", "symbol", "amount", "time"}``."""
        rows = await self.call("fetch_funding_history", symbol, since_ms)
        out = [{"id": f"{self.exchange.id}:funding:{r.get('id')}", "symbol": symbol, "amount": float(r["amount"]),
                "time": int(r["timestamp"])} for r in rows if r.get("amount") is not None]
        return sorted(out, key=lambda r: r["time"])

    def order_params(self, order: Order) -> dict[str, Any]:
        """ccxt params reaching ``order`` where it is kept (a conditional order: Binance's algo orders)."""
        return {"trigger": True} if self.conditional(order) else {}

    def reduce_only(self, order: Order, held: float) -> bool:
        """Is ``order`` on a perpetual a close that only reduces the position ``held`` (signed)? Then it
        is sent ``reduceOnly`` (the exchange never turns it into a new position, and exempts it from the
        minimum notional)."""
        if not is_perp(order.symbol) or held == 0.0:
            return False
        closes = (held > 0.0) == (order.side is Side.SELL)
        return closes and self.amount(order.symbol, order.remaining) <= abs(held) * (1 + 1e-9)


def order_status(exchange_order: dict[str, Any]) -> OrderStatus:
    """The domain status of a ccxt order dict (partially filled if open with some filled)."""
    st = STATUS.get(str(exchange_order.get("status") or "open"), OrderStatus.NEW)
    if st is OrderStatus.NEW and float(exchange_order.get("filled") or 0.0) > 0.0:
        return OrderStatus.PARTIALLY_FILLED
    return st
