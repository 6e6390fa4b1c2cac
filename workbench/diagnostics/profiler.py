"""The performance profiler: what a session's runner measures about itself, kept in its runner state
(so a view in another process reads it) as a :class:`Profile`.

* ``lag``: event-loop lag, how late the session's poll wakes (its sleep of ``poll_interval`` s);
* ``bar_to_order``: from a bar reaching the session to the end of its step, for bars that placed orders;
* ``busy`` / ``bars``: the time spent stepping bars and how many (the session's own CPU time: its loop is
  single-threaded);
* ``writes``: store write times on the session's writer thread (checkpoints, events, orders);
* ``samples``: every :data:`SAMPLE_SECONDS`, the host process's CPU % and resident memory, and the
  session's share of the wall time spent stepping bars.

Histograms have fixed bucket bounds (seconds), so a Profile stays small whatever the run's length.
"""
from __future__ import annotations

import os
import resource
import sys
import time
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

import pandas as pd

LAG_BOUNDS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
STEP_BOUNDS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 1e-2, 0.1, 1.0)
WRITE_BOUNDS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
SAMPLE_SECONDS = 5.0
MAX_SAMPLES = 120
HISTOGRAMS = {"lag": LAG_BOUNDS, "bar_to_order": STEP_BOUNDS, "writes": WRITE_BOUNDS}
SAMPLE_COLUMNS = ("time", "process_cpu_pct", "rss_mb", "session_cpu_pct", "lag_s")


class Histogram:
    """Counts of values (seconds) per bucket ``<= bounds[i]`` (the last bucket: above them all), with sum and max."""

    __slots__ = ("bounds", "counts", "total", "max")

    def __init__(self, bounds: Sequence[float]):
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        self.max = 0.0

    def add(self, x: float) -> None:
        i = 0
        for b in self.bounds:
            if x <= b:
                break
            i += 1
        self.counts[i] += 1
        self.total += x
        if x > self.max:
            self.max = x

    @property
    def n(self) -> int:
        return sum(self.counts)

    def snapshot(self) -> dict[str, Any]:
        return {"bounds": list(self.bounds), "counts": list(self.counts), "total": self.total, "max": self.max}

    @classmethod
    def restore(cls, state: dict[str, Any] | None, bounds: Sequence[float]) -> Histogram:
        out = cls(bounds)
        if state and tuple(state.get("bounds", ())) == out.bounds:
            out.counts = [int(c) for c in state["counts"]]
            out.total, out.max = float(state["total"]), float(state["max"])
        return out

    def frame(self) -> pd.DataFrame:
        """One row per bucket: ``le`` (upper bound, inf for the last) and ``count``."""
        return pd.DataFrame({"le": [*self.bounds, float("inf")], "count": self.counts})


def rss_mb() -> float:
    """This process's resident memory now (MB): /proc on Linux, else its peak from getrusage."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024


class Profile:
    """A runner's measurements (see the module docstring); ``snapshot``/``restore`` for the runner state."""

    def __init__(self) -> None:
        self.hist = {k: Histogram(b) for k, b in HISTOGRAMS.items()}
        self.samples: deque[list[Any]] = deque(maxlen=MAX_SAMPLES)
        self.busy = 0.0  # seconds stepping bars (added to by the session per bar: no histogram on the hot path)
        self.bars = 0
        self._last: tuple[float, float, float] | None = None  # (monotonic, process_time, step total) at the last sample
        self._last_lag = 0.0

    def lag(self, seconds: float) -> None:
        self._last_lag = max(seconds, 0.0)
        self.hist["lag"].add(self._last_lag)

    def writes(self, seconds: Iterable[float]) -> None:
        add = self.hist["writes"].add
        for s in seconds:
            add(s)

    def sample(self, now: datetime | None = None, mono: float | None = None, cpu: float | None = None) -> bool:
        """Take a CPU/memory sample if :data:`SAMPLE_SECONDS` passed since the last (the first only sets the
        baseline); returns whether one was taken. ``now``/``mono``/``cpu`` default to the clocks."""
        mono = time.monotonic() if mono is None else mono
        cpu = time.process_time() if cpu is None else cpu
        busy = self.busy
        last = self._last
        if last is not None and mono - last[0] < SAMPLE_SECONDS:
            return False
        self._last = (mono, cpu, busy)
        if last is None:
            return False
        wall = mono - last[0]
        when = (now or datetime.now(timezone.utc)).isoformat()
        self.samples.append([when, 100.0 * (cpu - last[1]) / wall, rss_mb(), 100.0 * (busy - last[2]) / wall,
                             self._last_lag])
        return True

    def snapshot(self) -> dict[str, Any]:
        return {"hist": {k: h.snapshot() for k, h in self.hist.items()}, "samples": [list(s) for s in self.samples],
                "busy": self.busy, "bars": self.bars}

    @classmethod
    def restore(cls, state: dict[str, Any] | None) -> Profile:
        out = cls()
        if state:
            out.hist = {k: Histogram.restore(state.get("hist", {}).get(k), b) for k, b in HISTOGRAMS.items()}
            out.samples.extend(list(s) for s in state.get("samples", []))
            out.busy, out.bars = float(state.get("busy", 0.0)), int(state.get("bars", 0))
        return out

    def samples_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(list(self.samples), columns=list(SAMPLE_COLUMNS))
        frame["time"] = pd.to_datetime(frame["time"], utc=True)
        return frame

    def summary(self) -> pd.DataFrame:
        """Per measure: count, mean and max (seconds); ``step`` is every bar step (no max kept)."""
        rows = [{"measure": "step", "count": self.bars, "mean_s": self.busy / self.bars if self.bars else None,
                 "max_s": None}]
        for k, h in self.hist.items():
            n = h.n
            rows.append({"measure": k, "count": n, "mean_s": h.total / n if n else None, "max_s": h.max if n else None})
        return pd.DataFrame(rows)


def session_profile(store: Any, session_id: str) -> Profile | None:
    """The profile in the session's runner state (None: no runner state or none measured yet)."""
    state = store.load_runner_state(session_id)
    if not state or "profile" not in state:
        return None
    return Profile.restore(state["profile"])


__all__ = ["HISTOGRAMS", "Histogram", "Profile", "SAMPLE_COLUMNS", "rss_mb", "session_profile"]
