"""Strategy base: declared parameters and one signal function for both speeds.

A strategy computes long entry/exit signals from a bars frame (UTC index, columns
open/high/low/close/volume), and short ones: by default, defined here once, a short entry is the long
exit signal and a short exit the long entry signal (a strategy may override :meth:`Strategy.short_signals`,
and :meth:`Strategy.last_short_signal` for speed, or set ``can_short = False``). The vectorized
backtest calls ``signals`` once over the whole history; the bar-by-bar loop calls it over the last
``lookback()`` closed bars and acts on the last row. Indicators must therefore depend only on a finite window of past
bars (rolling windows, not unbounded EWMs), so that both give the same last row.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
_COLUMN_INDEX = {c: i for i, c in enumerate(COLUMNS)}


@dataclass(frozen=True)
class Param:
    """A declared strategy parameter; the wizard builds its form from these."""

    name: str
    type: type
    default: Any
    low: float | None = None
    high: float | None = None
    description: str = ""
    choices: tuple[Any, ...] | None = None

    def check(self, value: Any) -> Any:
        """Coerce ``value`` to this parameter's type or raise ValueError saying what is allowed."""
        allowed = self.describe_range()
        if self.type is bool:
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                value = value.lower() in ("true", "1", "yes")
            if not isinstance(value, bool):
                raise ValueError(f"param {self.name!r} must be true or false (got {value!r})")
            return value
        try:
            if self.type is int:
                f = float(value)
                if not f.is_integer():
                    raise ValueError
                coerced: Any = int(f)
            elif self.type is float:
                coerced = float(value)
                if coerced != coerced:  # NaN
                    raise ValueError
            else:
                coerced = self.type(value)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(
                f"param {self.name!r} must be {self.type.__name__} {allowed} (got {value!r})"
            ) from None
        if isinstance(value, bool) and self.type is not bool:
            raise ValueError(f"param {self.name!r} must be {self.type.__name__} {allowed} (got {value!r})")
        if self.choices is not None and coerced not in self.choices:
            raise ValueError(f"param {self.name!r} must be one of {self.choices} (got {value!r})")
        if (self.low is not None and coerced < self.low) or (self.high is not None and coerced > self.high):
            raise ValueError(f"param {self.name!r} must be {allowed} (got {value!r})")
        return coerced

    def describe_range(self) -> str:
        if self.low is not None and self.high is not None:
            return f"between {self.low} and {self.high}"
        if self.low is not None:
            return f">= {self.low}"
        if self.high is not None:
            return f"<= {self.high}"
        return ""



def _last_row(signals: Callable[[pd.DataFrame], tuple[pd.Series, pd.Series]], window: BarWindow) -> tuple[bool, bool]:
    """The last row of ``signals`` run over ``window`` as a frame ((False, False) for an empty window)."""
    if not len(window):
        return False, False
    entries, exits = signals(window.frame())
    return bool(entries.iloc[-1]), bool(exits.iloc[-1])

class Strategy:
    """Base class. Subclasses set ``name``, ``title``, ``description``, ``params`` and implement
    ``signals`` and ``lookback``."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    #: may a session trade its signals short (config ``direction`` 'short' or 'both')?
    can_short: ClassVar[bool] = True

    def __init__(self, **params: Any):
        self.p: dict[str, Any] = self.validate(params)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {p.name: p.default for p in cls.params}

    @classmethod
    def validate(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Defaults merged with ``params``, each checked; unknown names raise ValueError."""
        known = {p.name: p for p in cls.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(
                f"strategy {cls.name!r} has no param {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(known) or 'none'}"
            )
        out = cls.defaults()
        for k, v in params.items():
            out[k] = known[k].check(v)
        cls.check_combination(out)
        return out

    @classmethod
    def check_combination(cls, params: dict[str, Any]) -> None:
        """Override to reject parameter combinations (e.g. fast >= slow) with ValueError."""

    def lookback(self) -> int:
        """Closed bars the signal function needs to produce the last row exactly."""
        raise NotImplementedError

    def signals(self, bars: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        """Boolean (entries, exits) aligned to ``bars.index``; a signal at bar t acts at bar t+1's open."""
        raise NotImplementedError

    def last_signal(self, window: BarWindow) -> tuple[bool, bool]:
        """(entry, exit) at the newest bar of ``window`` (the last ``lookback()`` closed bars, fewer while
        warming up): the bar-by-bar loop's call. This default runs :meth:`signals` over the window as a
        frame and takes its last row, so any strategy works; :class:`ArrayStrategy` skips the frame."""
        return _last_row(self.signals, window)

    def short_signals(self, bars: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        """Boolean (short entries, short exits) aligned to ``bars.index``. Default: the long exits and
        entries (:meth:`signals` swapped)."""
        entries, exits = self.signals(bars)
        return exits, entries

    def last_short_signal(self, window: BarWindow) -> tuple[bool, bool]:
        """(short entry, short exit) at the newest bar of ``window``: :meth:`short_signals`'s last row
        (its own short signals over the window as a frame), else :meth:`last_signal` swapped (the default rule)."""
        if not self.own_shorts:
            entry, exit_ = self.last_signal(window)
            return exit_, entry
        return _last_row(self.short_signals, window)

    @property
    def own_shorts(self) -> bool:
        """Does this strategy define its own short signals (not the default rule)?"""
        return type(self).short_signals is not Strategy.short_signals

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.p.items())
        return f"{type(self).__name__}({args})"


class BarWindow:
    """The newest closed bars of one symbol, oldest first: ``times`` (int64 ns since the epoch, UTC) and
    ``values`` (n x 5 float, columns :data:`COLUMNS`). Numpy views, no copies."""

    __slots__ = ("times", "values")

    def __init__(self, times: np.ndarray, values: np.ndarray):
        self.times, self.values = times, values

    def __len__(self) -> int:
        return len(self.times)

    def column(self, name: str) -> np.ndarray:
        """One column (``"close"`` ...) as a float array."""
        return self.values[:, _COLUMN_INDEX[name]]

    def frame(self) -> pd.DataFrame:
        """The window as a bars frame (UTC index), as :meth:`Strategy.signals` takes it."""
        index = pd.DatetimeIndex(self.times.view("M8[ns]")).tz_localize("UTC")
        return pd.DataFrame(self.values, index=index, columns=list(COLUMNS))


class ArrayStrategy(Strategy):
    """A strategy whose math is one function, :meth:`compute`, over numpy columns.

    :meth:`signals` evaluates it over every row (the backtest), :meth:`last_signal` over the newest
    row only (the live loop, no frame built): one definition, two speeds. ``compute`` must build on
    :mod:`workbench.strategies.indicators`, whose values for a row do not depend on how many rows
    are evaluated, so both agree bit for bit.
    """

    columns: ClassVar[tuple[str, ...]] = ("close",)  # the columns compute() reads

    def compute(self, cols: Mapping[str, np.ndarray], tail: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Boolean (entries, exits) for every row (``tail=None``) or for the last ``tail`` rows only."""
        raise NotImplementedError

    def signals(self, bars: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        cols = {c: bars[c].to_numpy(dtype=np.float64) for c in self.columns}
        entries, exits = self.compute(cols, None)
        return (pd.Series(np.asarray(entries, dtype=bool), index=bars.index),
                pd.Series(np.asarray(exits, dtype=bool), index=bars.index))

    def last_signal(self, window: BarWindow) -> tuple[bool, bool]:
        if not len(window):
            return False, False
        entries, exits = self.compute({c: window.column(c) for c in self.columns}, 1)
        return bool(entries[-1]), bool(exits[-1])
