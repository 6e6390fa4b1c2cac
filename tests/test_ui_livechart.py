"""LiveChart: bounded windows, throttled batch updates, close stops updates."""
from __future__ import annotations

import plotly.graph_objects as go
import pytest

from tests.kit import FakeClock
from workbench.ui.livechart import LiveChart


def chart(window=50, min_interval=0.0, clock=None):
    fig = go.Figure([go.Scatter(x=[], y=[]), go.Scatter(x=[], y=[], text=[])])
    return LiveChart(fig, window, min_interval, **({"clock": clock.monotonic} if clock else {}))


def test_window_bounds_every_trace_and_keeps_the_newest_points():
    c = chart(window=50)
    for i in range(0, 10_000, 7):
        c.push(0, range(i, i + 7), [float(v) for v in range(i, i + 7)])
        c.flush()
    assert c.points(0) == 50
    assert c.fig.data[0].x[-1] == 10_002 and c.fig.data[0].x[0] == 10_002 - 49
    assert c.points(1) == 0  # untouched trace stays empty
    c.push(1, [1, 2], [3, 4], texts=["a", "b"])
    assert c.flush(force=True) and c.fig.data[1].text == ("a", "b")


def test_flush_is_throttled_and_only_sends_changes():
    clock = FakeClock()
    c = chart(min_interval=0.125, clock=clock)  # binary fractions: the fake clock adds them exactly
    t_end = clock.monotonic() + 0.55
    pushes = 0
    while clock.monotonic() < t_end:
        c.push(0, [pushes], [pushes])
        pushes += 1
        c.flush()
        clock.advance(1 / 256)
    assert pushes > 100
    assert 4 <= c.updates <= 7  # ~ 0.55 s / 0.125 s, never once per push
    assert c.updates == 5  # at 0, 0.125, 0.25, 0.375 and 0.5 s
    clock.advance(0.125)
    assert c.flush()  # the points pushed since the last update go out once the interval has passed
    n = c.updates
    clock.advance(0.125)
    assert not c.flush() and c.updates == n  # nothing new: nothing sent
    c.push(0, [1], [1])
    assert c.flush(force=True) and c.updates == n + 1


def test_close_stops_updates_and_bad_input_is_rejected():
    c = chart()
    with pytest.raises(ValueError, match="2 x values but 1 y values"):
        c.push(0, [1, 2], [1])
    with pytest.raises(ValueError, match="window must be at least 2"):
        chart(window=1)
    c.push(0, [1], [1])
    c.close()
    assert not c.flush(force=True) and c.updates == 0


def test_clear_empties_every_trace_and_new_points_start_afresh():
    c = chart()
    c.push(0, [1, 2], [3, 4])
    c.push(1, [1], [5], texts=["sell 1"])
    c.flush(force=True)
    c.clear()
    assert c.flush(force=True) and c.points(0) == c.points(1) == 0 and not c.fig.data[1].text
    c.push(1, [7], [8])  # no stale texts come back with the next points
    c.flush(force=True)
    assert c.fig.data[1].x == (7,) and not c.fig.data[1].text
