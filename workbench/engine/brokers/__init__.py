"""Brokers behind one protocol (:class:`Broker`): the paper broker (fills simulated against bars) and
the exchange broker (orders on a ccxt exchange, sent by one worker task)."""
from __future__ import annotations

from workbench.engine.brokers.base import Broker, FillSink, OrderSink
from workbench.engine.brokers.paper import PaperBroker

__all__ = ["Broker", "FillSink", "OrderSink", "PaperBroker"]
