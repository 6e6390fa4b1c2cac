"""Alerts: rules over the store's events, sent through Apprise, rate limited, each one an ``alert`` event.

The store's events table is the one truth: :class:`AlertWatcher` reads the events written since the
last one it saw (by id) and turns those a rule matches (:func:`match_event`) into alerts; the drawdown
rule reads the equity points of running sessions against their peak, the optional fill rule the new
fills. An alert goes to every configured Apprise URL (email, Slack, Telegram, webhooks, ...); each
one sent, delivered or not, is recorded as an event of kind ``alert`` with ``delivered`` true/false.
A (rule, session) pair alerts at most once per ``min_interval`` seconds; the ones held back are
counted and reported by the next alert of that pair, or by a summary once the interval has passed.
Delivery failures are recorded, never raised: a webhook that is down never breaks the host.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from sqlalchemy import and_, func, select

from workbench.domain import FINAL_STATES, SessionState
from workbench.store import Store
from workbench.store import schema as s
from workbench.store.jsonutil import loads

log = logging.getLogger(__name__)

ENV = "WORKBENCH_ALERTS"
#: rule name -> the event kinds it alerts on ("fill" and "drawdown" read fills and equity instead)
RULES: dict[str, tuple[str, ...]] = {
    "breaker": ("circuit_breaker_tripped",),
    "stale_feed": ("feed_stale",),
    "error": ("error", "lease_lost"),
    "reconciliation": ("reconciled", "balance_mismatch"),
    "drawdown": (),
    "fill": (),
}
DEFAULT_RULES = frozenset(RULES) - {"fill"}
ALERT_KIND = "alert"
TEST_RULE = "test"  # the rule of send_test_alert's alert (the console's header does not list it as an alert)
#: the sessions the console watches: paper and live ones not in a final state (their runner may still write)
ACTIVE_STATES = tuple(st.value for st in SessionState if st not in FINAL_STATES)
WATCHED = and_(s.sessions.c.state.in_(ACTIVE_STATES), s.sessions.c.kind != "backtest")
BATCH = 500


class Notifier(Protocol):
    def __call__(self, title: str, body: str) -> bool: ...


@dataclass(frozen=True)
class AlertConfig:
    """Where alerts go (Apprise URLs), which rules fire, and how often.

    ``min_interval``: seconds between two alerts of one rule for one session; ``drawdown``: the
    fraction below a running session's peak equity that alerts (None: off); ``rules``: names of
    :data:`RULES` (default all but "fill"; ``fills=True`` adds it)."""

    urls: tuple[str, ...]
    min_interval: float = 300.0
    drawdown: float | None = None
    rules: frozenset[str] = DEFAULT_RULES
    fills: bool = False

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError(f"alerts need at least one Apprise URL: pass --alert URL or set {ENV}, "
                             "e.g. json://127.0.0.1:8080/hook, mailto://user:pass@example.com, tgram://token/chat")
        if not self.min_interval >= 0:
            raise ValueError(f"the alert interval must be 0 or more seconds (got {self.min_interval})")
        if self.drawdown is not None and not 0 < self.drawdown < 1:
            raise ValueError("the drawdown alert is a fraction between 0 and 1, e.g. 0.05 for 5% "
                             f"(got {self.drawdown})")
        unknown = sorted(set(self.rules) - set(RULES))
        if unknown:
            raise ValueError(f"unknown alert rules {unknown}; known: {sorted(RULES)}")

    @property
    def active_rules(self) -> frozenset[str]:
        rules = set(self.rules) | ({"fill"} if self.fills else set())
        return frozenset(rules - ({"drawdown"} if self.drawdown is None else set()))


def urls_from(given: Iterable[str] | None, environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """The URLs given (e.g. ``--alert`` flags), else those in ``$WORKBENCH_ALERTS`` (comma or space separated)."""
    urls = [u.strip() for u in given or [] if u.strip()]
    if urls:
        return tuple(urls)
    raw = (os.environ if environ is None else environ).get(ENV, "")
    return tuple(u for u in raw.replace(",", " ").split() if u)


def redact(url: str) -> str:
    """An Apprise URL without its secrets (tokens and passwords live after the scheme): just the scheme."""
    return url.split("://", 1)[0] + "://…" if "://" in url else "…"


def apprise_notifier(urls: Sequence[str]) -> Notifier:
    """A notifier sending to every URL through Apprise; ValueError names a URL Apprise does not accept."""
    import apprise

    app = apprise.Apprise()
    for url in urls:
        if not app.add(url):
            raise ValueError(f"Apprise does not accept the alert URL {redact(url)} (check its form, e.g. "
                             "json://host:port/path, slack://..., mailto://...; see the Apprise wiki)")

    def notify(title: str, body: str) -> bool:
        return bool(app.notify(title=title, body=body))

    return notify


@dataclass(frozen=True)
class Alert:
    """One alert: the ``rule`` that fired for ``session_id`` (None: store-wide), what it says, and the
    event (``event_id``) it came from."""

    rule: str
    session_id: str | None
    title: str
    body: str
    event_id: int | None = None
    data: dict[str, Any] = field(default_factory=dict)


def match_event(kind: str, message: str, data: Any, session_id: str | None, event_id: int | None,
                rules: Iterable[str] = DEFAULT_RULES) -> Alert | None:
    """The alert a store event raises under ``rules``, or None. A reconciliation with no differences
    raises none."""
    for rule in rules:
        if kind not in RULES[rule]:
            continue
        if kind == "reconciled" and not (data or {}).get("notes"):
            return None
        who = f"session {session_id}" if session_id else "workbench"
        return Alert(rule, session_id, f"workbench {rule.replace('_', ' ')}: {who}", message, event_id,
                     {"kind": kind})
    return None


def deliver(store: Store | None, notify: Notifier, alert: Alert, *, suppressed: int = 0,
            actor: str = "alerts") -> bool:
    """Send ``alert`` (noting ``suppressed`` earlier ones held back) and record it as an ``alert`` event
    with ``delivered``; returns whether it was delivered. Never raises for a failed delivery."""
    body = alert.body + (f"\n({suppressed} more {alert.rule} alerts held back by the rate limit)"
                         if suppressed else "")
    try:
        ok = bool(notify(alert.title, body))
        problem = "" if ok else "the notifier reported a failure (see the host log)"
    except Exception as e:  # a broken notifier must not break the host
        ok, problem = False, f"{type(e).__name__}: {e}"
    if not ok:
        log.warning("alert %s for %s not delivered: %s", alert.rule, alert.session_id, problem)
    if store is not None:
        data = {"rule": alert.rule, "delivered": ok, "event_id": alert.event_id, "suppressed": suppressed,
                "title": alert.title, **alert.data, **({"problem": problem} if problem else {})}
        try:
            store.add_event(alert.session_id, ALERT_KIND, f"{'sent' if ok else 'NOT delivered'}: {body}", data,
                            actor=actor)
        except Exception as e:  # e.g. the session was deleted meanwhile, or the store is full
            log.warning("alert %s not recorded: %s", alert.rule, e)
    return ok


def send_test_alert(urls: Sequence[str] | None = None, store: Store | None = None, *,
                    notifier: Notifier | None = None, actor: str = "user") -> bool:
    """Send a test alert to ``urls`` (default: ``$WORKBENCH_ALERTS``) for the dashboards' "test" button and
    ``workbench alerts test``, and record it in ``store`` if given; returns whether it was delivered.
    ValueError (to show as is) if there is no URL or Apprise refuses one."""
    notify = notifier or apprise_notifier(AlertConfig(urls_from(urls)).urls)
    alert = Alert(TEST_RULE, None, "workbench test alert", "a test alert from workbench: alerts reach you")
    return deliver(store, notify, alert, actor=actor)


class RateLimiter:
    """At most one alert per ``interval`` seconds of ``clock`` per key; counts the ones held back."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval, self.clock = interval, clock
        self._last: dict[tuple[str, str | None], float] = {}
        self.held: dict[tuple[str, str | None], int] = {}

    def allow(self, key: tuple[str, str | None]) -> bool:
        """True (and the interval restarts) if ``key`` may alert now; else counts one held back."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self.held[key] = self.held.get(key, 0) + 1
            return False
        self._last[key] = now
        return True

    def take_held(self, key: tuple[str, str | None]) -> int:
        return self.held.pop(key, 0)

    def due_summaries(self) -> list[tuple[tuple[str, str | None], int]]:
        """Keys with alerts held back whose interval has passed (their count is taken; the interval restarts)."""
        now = self.clock()
        due = [k for k in self.held if now - self._last.get(k, -float("inf")) >= self.interval]
        for k in due:
            self._last[k] = now
        return [(k, self.held.pop(k)) for k in due]


class AlertWatcher:
    """Turns new store events (and equity, fills) into alerts; :meth:`check` is one pass, :meth:`run` loops.

    Starts after the newest event, fill and equity point already stored (no alerts for history).
    ``clock`` (seconds) drives the rate limit; ``notifier`` defaults to Apprise on ``config.urls``."""

    def __init__(self, store: Store, config: AlertConfig, *, notifier: Notifier | None = None,
                 clock: Callable[[], float] = time.monotonic, actor: str = "alerts") -> None:
        self.store, self.config, self.actor = store, config, actor
        self.notify = notifier or apprise_notifier(config.urls)
        self.limiter = RateLimiter(config.min_interval, clock)
        self.rules = config.active_rules
        self.last_event = self._max_id(s.events)
        self.last_fill = self._max_id(s.fills)
        self.last_equity = 0  # the first pass reads every running session's curve for its peak
        self.peak: dict[str, float] = {}
        self.in_drawdown: set[str] = set()
        self._lock = threading.Lock()  # a check cancelled mid-way may still run in its thread

    def _max_id(self, table: Any) -> int:
        with self.store.engine.connect() as conn:
            return int(conn.execute(select(func.max(table.c.id))).scalar() or 0)

    def check(self) -> list[tuple[Alert, bool]]:
        """One pass: match what is new, send what the rate limit allows, and the summaries now due;
        returns each alert sent with whether it was delivered."""
        with self._lock:
            return self._check()

    def _check(self) -> list[tuple[Alert, bool]]:
        sent: list[tuple[Alert, bool]] = []
        for alert in self._new_alerts():
            key = (alert.rule, alert.session_id)
            if self.limiter.allow(key):
                sent.append((alert, self._send(alert, self.limiter.take_held(key))))
        for (rule, sid), n in self.limiter.due_summaries():
            alert = Alert(rule, sid, f"workbench {rule.replace('_', ' ')}: {n} alerts held back",
                          f"{n} {rule} alerts for {f'session {sid}' if sid else 'workbench'} were held back "
                          f"by the rate limit (one per {self.config.min_interval:g} s)", None, {"summary": True})
            sent.append((alert, self._send(alert, 0)))
        return sent

    def _send(self, alert: Alert, suppressed: int) -> bool:
        if alert.session_id is not None:  # name the session where it has a name (an alert goes out regardless)
            ss = s.sessions.c
            try:
                with self.store.engine.connect() as conn:
                    name = conn.execute(select(ss.name).where(ss.id == alert.session_id)).scalar()
            except Exception:
                name = None
            if name:
                alert = replace(alert, title=f"{alert.title} ({name})")
        return deliver(self.store, self.notify, alert, suppressed=suppressed, actor=self.actor)

    def _new_alerts(self) -> list[Alert]:
        out: list[Alert] = []
        e = s.events.c
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(e.id, e.session_id, e.kind, e.message, e.data_json)
                                .where(e.id > self.last_event).order_by(e.id).limit(BATCH)).all()
            for r in rows:
                self.last_event = int(r.id)
                if r.kind == ALERT_KIND:
                    continue
                alert = match_event(r.kind, r.message, loads(r.data_json), r.session_id, int(r.id), self.rules)
                if alert is not None:
                    out.append(alert)
            if "fill" in self.rules:
                out += self._fills(conn)
            if "drawdown" in self.rules:
                out += self._drawdowns(conn)
        return out

    @staticmethod
    def _active(conn: Any) -> list[str]:
        """The ids of the :data:`WATCHED` sessions (backtests' rows never alert)."""
        return list(conn.execute(select(s.sessions.c.id).where(WATCHED)).scalars())

    def _fills(self, conn: Any) -> list[Alert]:
        f = s.fills.c
        top = int(conn.execute(select(func.max(f.id))).scalar() or 0)
        rows = conn.execute(select(f.id, f.session_id, f.side, f.quantity, f.symbol, f.price)
                            .where(f.id > self.last_fill, f.id <= top, f.session_id.in_(self._active(conn)))
                            .order_by(f.id)).all()
        self.last_fill = top
        return [Alert("fill", r.session_id, f"workbench fill: session {r.session_id}",
                      f"{r.side} {r.quantity:g} {r.symbol} at {r.price:g}", None, {"fill_row": int(r.id)})
                for r in rows]

    def _drawdowns(self, conn: Any) -> list[Alert]:
        """Running sessions whose latest equity is ``drawdown`` or more below their peak (once per descent:
        the rule re-arms when the session climbs back above the threshold)."""
        q = s.equity.c
        active = self._active(conn)  # by session first: the index skips the backtests' long curves
        new = (select(q.session_id, func.max(q.equity).label("peak"), func.max(q.id).label("last"))
               .where(q.session_id.in_(active), q.id > self.last_equity).group_by(q.session_id))
        rows = conn.execute(new).all() if active else []
        if not rows:
            return []
        latest = dict(conn.execute(select(q.session_id, q.equity).where(q.id.in_([r.last for r in rows]))).all())
        self.last_equity = max(self.last_equity, *(int(r.last) for r in rows))
        limit = float(self.config.drawdown or 0.0)
        out: list[Alert] = []
        for r in rows:
            sid = r.session_id
            peak = self.peak[sid] = max(self.peak.get(sid, float("-inf")), float(r.peak))
            equity = float(latest[sid])
            dd = 1.0 - equity / peak if peak > 0 else 0.0
            if dd < limit:
                self.in_drawdown.discard(sid)
            elif sid not in self.in_drawdown:
                self.in_drawdown.add(sid)
                out.append(Alert("drawdown", sid, f"workbench drawdown: session {sid}",
                                 f"equity {equity:,.2f} is {dd:.1%} below its peak {peak:,.2f} "
                                 f"(alert threshold {limit:.1%})", None,
                                 {"equity": equity, "peak": peak, "drawdown": dd, "threshold": limit}))
        return out

    async def run(self, poll: float = 1.0) -> None:
        """Check every ``poll`` seconds until cancelled; the checks (store reads, HTTP) run in a worker
        thread, and a failing check is logged and retried on the next poll."""
        while True:
            try:
                await asyncio.to_thread(self.check)
            except Exception as e:
                log.warning("alert check failed (retried next poll): %s", e)
            await asyncio.sleep(poll)
