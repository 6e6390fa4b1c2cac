"""A Plotly ``FigureWidget`` that appends points over a bounded window, throttled.

``push(trace, xs, ys)`` only buffers (a deque of at most ``window`` points per trace);
``flush()`` writes the changed traces in one ``batch_update`` (one comm message), and at most
once per ``min_interval`` seconds. So a trace never holds more than ``window`` points and the
kernel sends at most 1 / ``min_interval`` chart updates per second, whatever the bar rate. Time
is read from ``clock`` (seconds, default ``time.monotonic``; tests pass a fake one).
"""
from __future__ import annotations

import copy
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import plotly.graph_objects as go

from workbench.ui.charts import figure_widget


class LiveChart:
    """Bounded, throttled appends to the traces of ``figure`` (a go.Figure or FigureWidget)."""

    def __init__(self, figure: go.Figure, window: int = 500, min_interval: float = 0.25,
                 clock: Callable[[], float] = time.monotonic):
        if window < 2:
            raise ValueError(f"chart window must be at least 2 points, got {window!r}")
        self.fig = figure_widget(figure)
        self.window, self.min_interval, self.clock = int(window), float(min_interval), clock
        n = len(self.fig.data)
        self._x: list[deque[Any]] = [deque(maxlen=self.window) for _ in range(n)]
        self._y: list[deque[Any]] = [deque(maxlen=self.window) for _ in range(n)]
        self._text: list[deque[Any]] = [deque(maxlen=self.window) for _ in range(n)]
        self._dirty: set[int] = set()
        self._last = -float("inf")
        self.updates = 0  # flushes that sent data
        self.closed = False

    def push(self, trace: int, xs: Iterable[Any], ys: Iterable[Any], texts: Iterable[Any] | None = None) -> None:
        """Buffer points for trace ``trace`` (index into ``fig.data``); older points fall out of the window."""
        xs, ys = list(xs), list(ys)
        if len(xs) != len(ys):
            raise ValueError(f"push: {len(xs)} x values but {len(ys)} y values")
        if not xs:
            return
        self._x[trace].extend(xs)
        self._y[trace].extend(ys)
        if texts is not None:
            self._text[trace].extend(texts)
        self._dirty.add(trace)

    def clear(self) -> None:
        """Empty every trace (sent with the next flush), e.g. to draw another symbol."""
        for buf in (*self._x, *self._y, *self._text):
            buf.clear()
        self._dirty.update(range(len(self._x)))

    def flush(self, force: bool = False) -> bool:
        """Send the buffered traces if anything changed and ``min_interval`` has passed; True if sent."""
        if self.closed or not self._dirty:
            return False
        now = self.clock()
        if not force and now - self._last < self.min_interval:
            return False
        with self.fig.batch_update():
            for i in sorted(self._dirty):
                tr = self.fig.data[i]
                tr.x, tr.y = tuple(self._x[i]), tuple(self._y[i])
                if self._text[i] or tr.text is not None:
                    tr.text = tuple(self._text[i]) or None
        # a view made later (Voilà renders after the cell ran) starts from the model's _widget_data, which
        # plotly refreshes only when the figure itself is displayed, not as a Box child: refresh it on
        # forced flushes and every 20th (between them a new view gets the whole window with the next update)
        if force or self.updates % 20 == 0:
            self.fig._widget_data = copy.deepcopy(self.fig._data)
        self._dirty.clear()
        self._last = now
        self.updates += 1
        return True

    def points(self, trace: int) -> int:
        """Points currently drawn by trace ``trace``."""
        x = self.fig.data[trace].x
        return 0 if x is None else len(x)

    def close(self) -> None:
        """No more updates; closes the widget."""
        self.closed = True
        self.fig.close()
