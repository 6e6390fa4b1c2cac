"""Diagnostics of a session, at store/pandas level (notebooks, the UI and the CLI use them alike):

* :mod:`~workbench.diagnostics.log`: the session log (its events) filtered and exported;
* :mod:`~workbench.diagnostics.orderflow`: each order's lifecycle with step times and latencies;
* :mod:`~workbench.diagnostics.profiler`: event-loop lag, bar-to-order latency, CPU, memory, store writes;
* :mod:`~workbench.diagnostics.validator`: gaps, duplicates, outliers, stale periods, REST vs websocket;
* :mod:`~workbench.diagnostics.why`: signals vs orders vs fills, blocked signals by rule, over time.

The runner keeps its counters (:class:`~workbench.diagnostics.why.WhyCounts`,
:class:`~workbench.diagnostics.profiler.Profile`) in its runner state, so they survive a restart and
can be read from any process.
"""
