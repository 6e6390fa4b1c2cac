"""Prometheus metrics for Grafana, read from the store at scrape time (no hooks in the engine).

:class:`StoreCollector` answers each scrape with a few grouped queries over the sessions that are
not final (requested, starting, running, paused, stopping, orphaned; backtests excluded): per session
its latest equity, P&L, cash and exposure, its state and breaker state (one-hot gauges), heartbeat
age, counters of orders, fills and rejections from the store's rows, and a histogram of the latency
from each order's creation to its fills; plus the number of sessions by kind and state.
:class:`MetricsServer` serves it, with the host process's CPU and memory (prometheus-client's process
collector), on 127.0.0.1.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, select

from workbench.domain import SessionState
from workbench.ops.alerts import WATCHED
from workbench.store import Store
from workbench.store import schema as s
from workbench.store.jsonutil import loads

PREFIX = "workbench"
LABELS = ["session_id", "name", "kind", "strategy"]
#: the risk engine's trading states (workbench.engine.risk.TradingState; a test keeps them equal)
BREAKER_STATES = ("running", "reducing", "halted")
BREAKER_KINDS = ("circuit_breaker_tripped", "circuit_breaker_reset")
#: upper bounds (seconds) of the order-to-fill latency histogram's buckets
LATENCY_BUCKETS = (0.1, 0.5, 1.0, 2.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)


@dataclass(frozen=True)
class MetricInfo:
    name: str
    kind: str  # gauge | counter | histogram
    help: str
    extra: tuple[str, ...] = ()  # labels besides LABELS


#: the label of the money gauges: the session's base currency, so sessions in BTC and in USDT are never summed
MONEY = ("currency",)
#: every per-session metric (the dashboard and its test read this list)
SESSION_METRICS = (
    MetricInfo("session_equity", "gauge", "latest equity point, in the session's base currency", MONEY),
    MetricInfo("session_pnl", "gauge", "latest equity minus the initial balance", MONEY),
    MetricInfo("session_cash", "gauge", "latest cash", MONEY),
    MetricInfo("session_exposure", "gauge", "latest open exposure (market value of the positions)", MONEY),
    MetricInfo("session_state", "gauge", "1 for the session's lifecycle state, 0 for the others", ("state",)),
    MetricInfo("session_breaker", "gauge", "1 for the circuit breaker's trading state, 0 for the others",
               ("state",)),
    MetricInfo("session_heartbeat_age_seconds", "gauge", "seconds since the runner's last heartbeat"),
    MetricInfo("session_orders", "counter", "orders recorded"),
    MetricInfo("session_fills", "counter", "fills recorded"),
    MetricInfo("session_rejections", "counter", "orders rejected (risk rules and broker)"),
    MetricInfo("session_fill_latency_seconds", "histogram",
               "from an order's creation (its bar's time for the engine's orders) to each of its fills"),
)
SUFFIXES = {"gauge": ("",), "counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def metric_names() -> set[str]:
    """The sample names as scraped and queried (counters end in ``_total``, histograms in ``_bucket``,
    ``_sum``, ``_count``), including ``workbench_sessions``."""
    return {f"{PREFIX}_{m.name}{x}" for m in SESSION_METRICS for x in SUFFIXES[m.kind]} | {f"{PREFIX}_sessions"}


class StoreCollector:
    """A prometheus-client collector reading ``store`` on each scrape."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def describe(self) -> list[Any]:
        return []  # collected lazily: no store query at registration

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        families: dict[str, Any] = {}
        kinds = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily, "histogram": HistogramMetricFamily}
        for m in SESSION_METRICS:
            cls = kinds[m.kind]
            families[m.name] = cls(f"{PREFIX}_{m.name}", m.help, labels=LABELS + list(m.extra))
        by_state = GaugeMetricFamily(f"{PREFIX}_sessions", "sessions in the store by kind and state",
                                     labels=["kind", "state"])
        for labels, row in self._rows(by_state):
            for name in ("equity", "pnl", "cash", "exposure"):
                if row.get(name) is not None:
                    families[f"session_{name}"].add_metric(labels + [row["currency"]], row[name])
            for st in SessionState:
                families["session_state"].add_metric(labels + [st.value], float(row["state"] == st.value))
            for st_name in BREAKER_STATES:
                families["session_breaker"].add_metric(labels + [st_name], float(row["breaker"] == st_name))
            if row.get("heartbeat_age") is not None:
                families["session_heartbeat_age_seconds"].add_metric(labels, row["heartbeat_age"])
            for name in ("orders", "fills", "rejections"):
                families[f"session_{name}"].add_metric(labels, row.get(name, 0))
            lat = row["latencies"]
            families["session_fill_latency_seconds"].add_metric(
                labels, [(str(b), sum(1 for x in lat if x <= b)) for b in LATENCY_BUCKETS] + [("+Inf", len(lat))],
                sum(lat))
        yield by_state
        yield from families.values()

    def _rows(self, by_state: Any) -> list[tuple[list[str], dict[str, Any]]]:
        ss, q, o, f, e = s.sessions.c, s.equity.c, s.orders.c, s.fills.c, s.events.c
        now = datetime.now(timezone.utc)
        with self.store.engine.connect() as conn:
            for kind, state, n in conn.execute(select(ss.kind, ss.state, func.count()).group_by(ss.kind, ss.state)):
                by_state.add_metric([kind, state], n)
            sessions = conn.execute(select(ss.id, ss.name, ss.kind, ss.strategy, ss.state, ss.initial_balance,
                                           ss.heartbeat_at, ss.config_json).where(WATCHED)).all()
            ids = [r.id for r in sessions]
            if not ids:
                return []
            last = select(func.max(q.id)).where(q.session_id.in_(ids)).group_by(q.session_id)
            equity = {r.session_id: r for r in conn.execute(
                select(q.session_id, q.equity, q.cash, q.exposure).where(q.id.in_(last)))}
            orders: dict[str, int] = dict(conn.execute(select(o.session_id, func.count()).where(o.session_id.in_(ids))
                                       .group_by(o.session_id)).all())
            fills: dict[str, int] = dict(conn.execute(select(f.session_id, func.count()).where(f.session_id.in_(ids))
                                      .group_by(f.session_id)).all())
            rejections: dict[str, int] = dict(conn.execute(select(e.session_id, func.count()).where(
                e.session_id.in_(ids), e.kind == "order_rejected").group_by(e.session_id)).all())
            last_trip = select(func.max(e.id)).where(e.session_id.in_(ids), e.kind.in_(BREAKER_KINDS)) \
                .group_by(e.session_id)
            latencies: dict[str, list[float]] = {}
            for sid, filled, created in conn.execute(
                    select(f.session_id, f.time, o.created_at).join(s.orders, (o.session_id == f.session_id)
                                                                    & (o.client_id == f.client_id))
                    .where(f.session_id.in_(ids))):
                latencies.setdefault(sid, []).append(max(0.0, (filled - created).total_seconds()))
            breaker = {r.session_id: ("running" if r.kind == "circuit_breaker_reset"
                                      else str((loads(r.data_json) or {}).get("state", "halted")))
                       for r in conn.execute(select(e.session_id, e.kind, e.data_json).where(e.id.in_(last_trip)))}
        out = []
        for r in sessions:
            eq = equity.get(r.id)
            row: dict[str, Any] = {"state": r.state, "breaker": breaker.get(r.id, "running"),
                                   "currency": _currency(r.config_json),
                                   "orders": orders.get(r.id, 0), "fills": fills.get(r.id, 0),
                                   "rejections": rejections.get(r.id, 0), "latencies": latencies.get(r.id, []),
                                   "heartbeat_age": None if r.heartbeat_at is None
                                   else max(0.0, (now - r.heartbeat_at).total_seconds())}
            if eq is not None:
                row.update(equity=eq.equity, pnl=eq.equity - r.initial_balance, cash=eq.cash, exposure=eq.exposure)
            out.append(([r.id, r.name or "", r.kind, r.strategy], row))
        return out


def _currency(config_json: str | None) -> str:
    """A stored config's base currency (:func:`~workbench.config.currency_of`, the config's own rule, read from
    its JSON without validating it on every scrape); "" if unreadable."""
    from workbench.config import currency_of

    try:
        cfg = loads(config_json) if config_json else None
    except ValueError:  # a malformed stored config: the session is still scraped, without a currency
        cfg = None
    if not isinstance(cfg, dict):
        return ""
    symbols = [str(s) for s in cfg.get("symbols") or []]
    return currency_of(cfg.get("base_currency"), symbols) if symbols or cfg.get("base_currency") else ""


class MetricsServer:
    """The Prometheus endpoint: ``/metrics`` on ``host``:``port`` (0: any free port; see :attr:`port`)
    served from a daemon thread until :meth:`stop`."""

    def __init__(self, store: Store, port: int = 0, host: str = "127.0.0.1") -> None:
        from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

        if not 0 <= port < 65536:
            raise ValueError(f"the metrics port must be between 1 and 65535, or 0 for any free port (got {port})")
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        self.registry.register(StoreCollector(store))
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as e:
            raise OSError(f"cannot serve metrics on {host}:{port}: {e.strerror or e}; pick a free port "
                          "with --metrics-port") from e
        self.host, self.port = host, int(self._server.server_port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
