"""The session engine: the trader step, brokers, portfolio, risk engine, feeds, sessions and the host.

Submodules import lazily (``from workbench.engine.session import Session``); the names below are
re-exported on first access so importing ``workbench.engine`` stays cheap.
"""
from __future__ import annotations

from typing import Any

_EXPORTS = {
    "Session": "workbench.engine.session",
    "CommandRejected": "workbench.engine.commands",
    "Command": "workbench.engine.commands",
    "SessionHandle": "workbench.engine.handle",
    "handle_for": "workbench.engine.handle",
    "COMMANDS": "workbench.engine.session",
    "Trader": "workbench.engine.trader",
    "replay": "workbench.engine.trader",
    "Broker": "workbench.engine.brokers",
    "PaperBroker": "workbench.engine.brokers",
    "ExchangeBroker": "workbench.engine.brokers.exchange",
    "ReplayFeed": "workbench.engine.feeds",
    "run_host": "workbench.engine.host",
    "LiveSession": "workbench.engine.live",
    "LiveNotArmed": "workbench.engine.live",
    "arming_problem": "workbench.engine.live",
    "open_session": "workbench.engine.live",
    "LiveFeed": "workbench.engine.live_feed",
    "CcxtBroker": "workbench.engine.ccxt_broker",
    "mark_orphans": "workbench.engine.host",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'workbench.engine' has no attribute {name!r}")
