"""Live sessions: a :class:`Session` with the exchange broker and a live feed.

* Arming: :func:`arming_problem` is the one rule (the wizard delegates to it). A live session needs
  ``arming={"allow_live": True, "confirmation": "<exchange>:<account>"}`` naming ``config.data.exchange``
  and ``config.live.account``; without it :class:`LiveSession` refuses to be created, saying how to arm.
* Orders, fills, reconciliation and the exchange side of the controls are the exchange broker's
  (:mod:`workbench.engine.brokers.exchange`); the bar step is the paper session's
  (:class:`~workbench.engine.trader.Trader`).
* :func:`open_session` makes the right session for a config (live, paper on live data, replay).
"""
from __future__ import annotations

import re
from collections.abc import AsyncIterable, Mapping
from typing import Any, Literal

from workbench.config import SessionConfig
from workbench.domain import Order, SessionKind
from workbench.engine.brokers.exchange import ExchangeBroker
from workbench.engine.ccxt_broker import CcxtBroker, make_async_exchange
from workbench.engine.live_feed import LiveFeed
from workbench.engine.session import Session
from workbench.engine.stored_feed import StoredBarsFeed
from workbench.execution import Bar
from workbench.retry import RetryPolicy
from workbench.store import Store
from workbench.team import current_actor
from workbench.team.roles import authorize, authorize_live


class LiveNotArmed(ValueError):
    """A live session was requested without arming; the message says how to arm it."""


def _get(obj: Any, *path: str) -> Any:
    for p in path:
        if obj is None:
            return None
        obj = obj.get(p) if isinstance(obj, Mapping) else getattr(obj, p, None)
    return obj


def arming_problem(config: SessionConfig | Mapping[str, Any], arming: Mapping[str, Any] | None) -> str | None:
    """Why a session of ``config`` may not trade live with ``arming``, or None if it may.

    Only ``kind='live'`` needs arming: ``arming['allow_live']`` true and ``arming['confirmation']`` equal
    to ``'<exchange>:<account>'`` (``config.data.exchange``, ``config.live.account``). ``config`` may be a
    mapping of form values; without ``live.account`` there any account name is accepted.
    """
    kind = _get(config, "kind")
    kind = getattr(kind, "value", kind)
    if kind != SessionKind.LIVE.value:
        return None
    exchange = _get(config, "data", "exchange") or "binance"
    account = _get(config, "live", "account")
    example = f"{exchange}:{account or 'main'}"
    if not arming or not arming.get("allow_live"):
        return (f"live trading is not armed: tick 'allow live trading' and type the exchange:account "
                f"(in code: arming={{'allow_live': True, 'confirmation': '{example}'}})")
    confirmation = str(arming.get("confirmation") or "").strip()
    ok = (confirmation == f"{exchange}:{account}" if account
          else re.fullmatch(rf"{re.escape(exchange)}:[\w.\-]+", confirmation) is not None)
    if not ok:
        return f"type the exchange and account to confirm, e.g. '{example}' (got {confirmation!r})"
    return None


class LiveSession(Session):
    """A :class:`Session` trading on an exchange: it refuses to exist unless armed, its broker is an
    :class:`~workbench.engine.brokers.exchange.ExchangeBroker` over ``broker`` and its feed a
    :class:`LiveFeed` (made from the broker's client unless given). ``time_sync_every``, ``reconcile_every``
    and ``mismatch_trip`` (default: ``config.live``'s) go to the broker (:mod:`workbench.engine.brokers.watch`);
    a reconciliation difference above ``mismatch_trip`` trips the session's circuit breaker. The config's
    pre-flight waivers are recorded as ``waiver`` events when the run starts. Everything else is the Session's."""

    def __init__(self, config: SessionConfig, store: Store, *, broker: CcxtBroker | ExchangeBroker,
                 arming: Mapping[str, Any] | None = None, feed: AsyncIterable[dict[str, Bar]] | None = None,
                 order_policy: RetryPolicy | None = None, fill_timeout: float = 10.0, owns_broker: bool = False,
                 resting_poll: float | None = None, time_sync_every: float | None = None,
                 reconcile_every: float | None = None, mismatch_trip: float | None | Literal["config"] = "config",
                 **kwargs: Any):
        problem = arming_problem({"kind": "live", "data": {"exchange": config.data.exchange},
                                  "live": {"account": config.live.account}}, arming)
        if problem:
            raise LiveNotArmed(problem)
        live = config.live  # the watch's intervals and threshold: the config's unless given
        time_sync_every = live.time_sync_every if time_sync_every is None else time_sync_every
        reconcile_every = live.reconcile_every if reconcile_every is None else reconcile_every
        trip = live.mismatch_trip if isinstance(mismatch_trip, str) else mismatch_trip
        if isinstance(broker, CcxtBroker):
            broker = ExchangeBroker(broker, config, store, order_policy=order_policy, fill_timeout=fill_timeout,
                                    resting_poll=resting_poll, owns_client=owns_broker,
                                    time_sync_every=time_sync_every, reconcile_every=reconcile_every,
                                    mismatch_trip=trip)
        if feed is None:
            c = config
            feed = LiveFeed(broker.client.exchange, c.symbols, c.data.timeframe, poll_seconds=c.live.poll_seconds,
                            stale_bars=c.live.stale_bars)
        super().__init__(config, store, feed=feed, broker=broker, **kwargs)
        if isinstance(feed, LiveFeed) and feed._session is None:
            feed.attach(self)
        broker.trip_breaker = self._trip_on_mismatch
        broker.risk = self.risk  # protective orders follow its effective stops (brokers/protect.py)
        broker.on_refused = self._refused
        self.trader.act_on_close = True  # a closed bar's signals go to the exchange now, not a bar later

    async def _started(self) -> None:
        """Record the config's pre-flight waivers (once per session), then run as a Session."""
        waivers = {k: v for k, v in (("stops", self.config.live.waive_stops),
                                     ("rehearsal", self.config.live.waive_rehearsal)) if v}
        if waivers:
            seen = set(self.store.events(self.id, kinds=["waiver"])["message"])
            for check, reason in waivers.items():
                msg = f"pre-flight check '{check}' waived: {reason}"
                if msg not in seen:
                    self.store.add_event(self.id, "waiver", msg, {"check": check, "reason": reason},
                                         actor=self.actor)
        await super()._started()

    def _refused(self, order: Order, why: str) -> None:
        """The exchange refused an order (InsufficientFunds, a filter such as -1013) or it was below the lot
        size: it counts toward the circuit breaker's rejection rule like a risk rejection (the broker wrote
        the ``order_rejected`` event)."""
        self.risk.count_rejection(self._now())
        if self.risk.events:
            self._risk_events()

    def _trip_on_mismatch(self, reason: str, data: dict[str, Any]) -> None:
        """The broker's reconciliation found a difference above its threshold: trip the circuit breaker
        through the session's own control (an event if the session cannot take it now)."""
        try:
            self.trip_breaker(reason, actor="reconcile")
        except Exception as e:
            self.store.add_event(self.id, "error", f"circuit breaker not tripped ({reason}): {type(e).__name__}: {e}",
                                 data, actor="reconcile")

    def __repr__(self) -> str:
        return f"<LiveSession {self.id} {self.config.data.exchange}:{self.config.live.account} {self.state.value}>"


def open_session(config: SessionConfig, store: Store, *, resume: str | None = None, exchange: Any = None,
                 credentials: Any = None, arming: Mapping[str, Any] | None = None, **kwargs: Any) -> Session:
    """The right session for ``config``: a :class:`LiveSession` for ``kind='live'`` (needs ``arming``; keys
    from ``credentials`` or :func:`workbench.secrets.load_credentials`), a paper :class:`Session` on a
    :class:`LiveFeed` for ``data.live``, else a replaying :class:`Session`. ``exchange``: an async ccxt
    client to use instead of one made from the config; ``broker_policy``: the broker's :class:`RetryPolicy`.
    ``resume``: an existing session id to resume. Other keywords go to the session class."""
    live = config.kind is SessionKind.LIVE
    if resume is None and kwargs.get("session_id") is None:  # a new session run here (a kernel, `workbench run`):
        authorize(store, current_actor(), "request_session")  # in team mode an operator's, like a request's
    if live:
        problem = arming_problem(config, arming)
        if problem:
            raise LiveNotArmed(problem)
        if (sid := resume or kwargs.get("session_id")) is not None:
            authorize_live(store, sid)  # team mode: armed by an admin
    owns = exchange is None and (live or (config.data.live and config.data.beside is None))
    if owns:
        if live and credentials is None:
            from workbench.secrets import load_credentials

            credentials = load_credentials(config.data.exchange, config.live.account)
        exchange = make_async_exchange(config.data.exchange, credentials if live else None, sandbox=config.live.sandbox)
    if live:
        policy = kwargs.pop("broker_policy", None)
        broker = CcxtBroker(exchange, policy=policy) if policy is not None else CcxtBroker(exchange)
        kwargs.update(broker=broker, arming=arming, owns_broker=owns)
        cls: type[Session] = LiveSession
    else:
        cls = Session
        if config.depth is not None and config.depth.model == "book" and kwargs.get("broker") is None:  # rule 14
            from workbench.data.books import depth_config
            from workbench.engine.brokers.book import BookPaperBroker

            config = depth_config(config)  # bars: the impact calibrated from recorded books, as backtests
            if config.data.live and exchange is not None:  # live data: market orders walk the exchange's book
                kwargs["broker"] = BookPaperBroker(config, exchange)
        if config.data.beside is not None and kwargs.get("feed") is None:  # beside a session: its stored bars
            kwargs["feed"] = StoredBarsFeed.beside(config, store, poll=kwargs.get("poll_interval", 0.5))
        if config.data.live and kwargs.get("feed") is None:
            c = config
            kwargs["feed"] = LiveFeed(exchange, c.symbols, c.data.timeframe, poll_seconds=c.live.poll_seconds,
                                      stale_bars=c.live.stale_bars, owns_exchange=owns)
    session = cls.resume(resume, store, **kwargs) if resume is not None else cls(config, store, **kwargs)
    feed = session._feed
    if isinstance(feed, LiveFeed) and feed._session is None:
        feed.attach(session)
    if isinstance(feed, StoredBarsFeed) and feed.record_for is None:
        feed.record_for = session.id  # it keeps the bars it is handed as its own (fidelity twin, resume)
    return session
