"""The operator's console beside ``workbench host``: alerts (:mod:`.alerts`) and a Prometheus endpoint
(:mod:`.metrics`), both reading the store (the one truth) and never writing to a session's state.

``run_host(..., ops=OpsConfig(...))`` runs them with the host (:class:`OpsConsole`): the alert
watcher as a task on the host's loop (its store reads and HTTP calls in a worker thread), the
metrics server in its own thread. Neither can break the host: failures are logged and recorded.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from workbench.ops.alerts import AlertConfig, AlertWatcher, send_test_alert
from workbench.store import Store

__all__ = ["AlertConfig", "OpsConfig", "OpsConsole", "send_test_alert"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpsConfig:
    """``alerts``: None for none; ``metrics_port``: None for no endpoint, 0 for any free port;
    ``alert_poll``: seconds between alert checks."""

    alerts: AlertConfig | None = None
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    alert_poll: float = 1.0


class OpsConsole:
    """Starts and stops the alert watcher and the metrics server of one host (nothing if ``config`` is None)."""

    def __init__(self, store: Store, config: OpsConfig | None) -> None:
        self.store, self.config = store, config
        self.watcher: AlertWatcher | None = None
        self.metrics: Any = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> OpsConsole:
        """Start what the config asks for; a bad URL or a busy port raises (the host does not start)."""
        cfg = self.config
        if cfg is None:
            return self
        if cfg.metrics_port is not None:
            from workbench.ops.metrics import MetricsServer

            self.metrics = MetricsServer(self.store, cfg.metrics_port, cfg.metrics_host)
            log.info("metrics served at %s", self.metrics.url)
        if cfg.alerts is not None:
            self.watcher = AlertWatcher(self.store, cfg.alerts)
            self._task = asyncio.get_running_loop().create_task(self.watcher.run(cfg.alert_poll))
        return self

    async def stop(self) -> None:
        """Stop both, after a last alert check (events written while the sessions ended); never raises
        (it runs while the host hands its sessions back)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self.watcher is not None:
            try:
                await asyncio.to_thread(self.watcher.check)
            except Exception as e:
                log.warning("last alert check failed: %s", e)
        if self.metrics is not None:
            try:
                self.metrics.stop()
            except Exception as e:
                log.warning("metrics server did not stop cleanly: %s", e)
            self.metrics = None
