"""Strategy base: declared parameters and one signal function for both speeds.

A strategy computes long entry/exit signals from a bars frame (UTC index, columns
open/high/low/close/volume). The vectorized backtest calls ``signals`` once over the
whole history; the bar-by-bar loop calls it over the last ``lookback()`` closed bars and
acts on the last row. Indicators must therefore depend only on a finite window of past
bars (rolling windows, not unbounded EWMs), so that both give the same last row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd


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


class Strategy:
    """Base class. Subclasses set ``name``, ``title``, ``description``, ``params`` and implement
    ``signals`` and ``lookback``."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()

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

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.p.items())
        return f"{type(self).__name__}({args})"
