"""The bars frame: a UTC ``DatetimeIndex`` named ``time`` and float64 OHLCV columns; plus a quality report."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import overload

import numpy as np
import pandas as pd

from workbench import domain

BARS_COLUMNS = ("open", "high", "low", "close", "volume")
_TF_RE = re.compile(r"^(\d+)([smhdw])$")
_TF_UNITS = {"s": "s", "m": "min", "h": "h", "d": "D", "w": "W"}


class BarsError(ValueError):
    """A bars frame (or a source of bars) is unusable; the message says what is wrong and how to fix it."""


def timeframe_delta(timeframe: str) -> pd.Timedelta:
    """``"1m"`` -> 1 minute, ``"4h"`` -> 4 hours, ``"1d"`` -> 1 day (ccxt timeframe notation)."""
    m = _TF_RE.match(timeframe) if isinstance(timeframe, str) else None
    if not m or int(m.group(1)) == 0:
        raise BarsError(f"timeframe {timeframe!r} is not understood; use e.g. '1m', '5m', '1h', '4h' or '1d'")
    return pd.Timedelta(int(m.group(1)), unit=_TF_UNITS[m.group(2)])


def bar_interval(index: pd.DatetimeIndex) -> pd.Timedelta | None:
    """The bars' own interval: the most common positive step between times (the smallest if tied);
    None with fewer than two distinct times."""
    steps = pd.Series(index).diff().dropna()
    steps = steps[steps > pd.Timedelta(0)]
    return None if steps.empty else pd.Timedelta(steps.mode().iloc[0])


def interval_name(interval: pd.Timedelta) -> str:
    """An interval in timeframe notation, in its coarsest whole unit: 5 minutes -> ``"5m"``, 1 day -> ``"1d"``."""
    seconds = interval.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return str(interval)


def check_timeframe(interval: pd.Timedelta, timeframe: str) -> pd.Timedelta:
    """``timeframe``'s length, if bars ``interval`` apart can make it (the same or coarser: bars cannot be
    split); else :class:`BarsError` naming both intervals and the fix."""
    step = timeframe_delta(timeframe)
    if interval > step:
        own = interval_name(interval)
        raise BarsError(f"the bars are {own} apart, coarser than the timeframe {timeframe!r}; set the timeframe "
                        f"to the data's own ({own!r}) or a coarser one (bars cannot be split)")
    return step


def resample_bars(bars: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """``bars`` (validated, time-ordered) as ``timeframe`` bars: open first, high max, low min, close
    last, volume summed, labelled by each bar's start; periods without bars are left out. Bars
    already at ``timeframe`` come back unchanged. Raises :class:`BarsError` when ``bars`` are coarser
    than ``timeframe`` (:func:`check_timeframe` on their :func:`bar_interval`)."""
    interval = bar_interval(pd.DatetimeIndex(bars.index))
    if interval is None:
        return bars
    step = check_timeframe(interval, timeframe)
    if interval == step and pd.Series(bars.index).diff().dropna().min() >= step:
        return bars
    out = bars.resample(step, label="left", closed="left").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
    return out.dropna(subset=["open"]).rename_axis("time")


@overload
def to_utc(t: None) -> None: ...


@overload
def to_utc(t: str | datetime | pd.Timestamp) -> pd.Timestamp: ...


def to_utc(t: str | datetime | pd.Timestamp | None) -> pd.Timestamp | None:
    """A UTC timestamp from a string, datetime or Timestamp (naive = UTC); ``None`` stays ``None``."""
    if t is None:
        return None
    try:
        return domain.to_utc(t)
    except (ValueError, TypeError) as e:
        raise BarsError(str(e)) from None


def empty_bars() -> pd.DataFrame:
    """A bars frame with no rows."""
    index = pd.DatetimeIndex([], tz="UTC", name="time")
    return pd.DataFrame({c: np.array([], dtype="float64") for c in BARS_COLUMNS}, index=index)


def normalise_bars(df: pd.DataFrame) -> pd.DataFrame:
    """Column names lower-cased, OHLCV as float64, a UTC index named ``time``; row order left as it is.

    The index may already be datetimes, or come from a ``time`` column. Naive times are taken as UTC.
    """
    if not isinstance(df, pd.DataFrame):
        raise BarsError(f"bars must be a pandas DataFrame, got {type(df).__name__}")
    out = df.rename(columns=lambda c: str(c).strip().lower())
    if not isinstance(out.index, pd.DatetimeIndex):
        if "time" in out.columns:
            out = out.set_index("time")
        else:
            raise BarsError(
                f"bars need a DatetimeIndex (or a 'time' column); got a {type(out.index).__name__}; "
                "use df.set_index(pd.to_datetime(df['<your time column>']))"
            )
        try:
            out.index = pd.DatetimeIndex(pd.to_datetime(out.index, utc=True))
        except (ValueError, TypeError) as e:
            raise BarsError(f"the 'time' column could not be read as datetimes: {e}") from e
    missing = [c for c in BARS_COLUMNS if c not in out.columns]
    if missing:
        raise BarsError(
            f"bars are missing column(s) {', '.join(missing)}; found {', '.join(map(str, out.columns)) or 'none'}; "
            f"a bars frame needs {', '.join(BARS_COLUMNS)}"
        )
    index = out.index
    if index.hasnans:
        raise BarsError(f"the time index has {int(index.isna().sum())} missing (NaT) entries; drop or fix those rows")
    index = domain.utc_index(index)
    cols = {}
    for c in BARS_COLUMNS:
        col = out[c]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            num = pd.to_numeric(col, errors="coerce")
            bad = num.isna() & col.notna()
            if bad.any():
                pos = int(np.argmax(bad.to_numpy()))
                raise BarsError(f"column {c!r} has a non-numeric value {col.iloc[pos]!r} at {index[pos]}; "
                                "fix or drop that row")
            col = num
        cols[c] = col.to_numpy(dtype="float64", na_value=np.nan)
    return pd.DataFrame(cols, index=pd.DatetimeIndex(index, name="time").as_unit("ns"))


def validate_bars(df: pd.DataFrame) -> pd.DataFrame:
    """A clean bars frame: normalised (see :func:`normalise_bars`), sorted by time, duplicate times dropped (last kept).

    Raises :class:`BarsError` naming what is wrong (missing columns, non-datetime index, non-numeric values).
    """
    out = normalise_bars(df)
    if not out.index.is_monotonic_increasing:
        out = out.sort_index(kind="stable")
    if out.index.has_duplicates:
        out = out[~out.index.duplicated(keep="last")]
    return out


@dataclass
class QualityReport:
    """What :func:`quality_report` found. Counts are rows; ``gap_list`` holds ``(first_missing, last_missing)``
    bar times."""

    bars: int
    start: pd.Timestamp | None
    end: pd.Timestamp | None
    timeframe: str
    gaps: int
    missing_bars: int
    gap_list: list[tuple[pd.Timestamp, pd.Timestamp]] = field(repr=False)
    duplicates: int
    nans: int
    non_monotonic: int
    zero_volume: int
    ohlc_inconsistent: int

    CHECKS = ("gaps", "duplicates", "nans", "non_monotonic", "zero_volume", "ohlc_inconsistent")

    @property
    def ok(self) -> bool:
        """True when every check found nothing."""
        return all(getattr(self, c) == 0 for c in self.CHECKS)

    def to_frame(self) -> pd.DataFrame:
        """One row per check: ``count``, ``ok`` and a short description, for display in a notebook."""
        about = {
            "gaps": f"missing stretches ({self.missing_bars} bars missing at {self.timeframe})",
            "duplicates": "bars whose time repeats an earlier bar",
            "nans": "bars with a missing open/high/low/close/volume",
            "non_monotonic": "bars earlier than the bar before them",
            "zero_volume": "bars with zero volume",
            "ohlc_inconsistent": "high < max(open, close), low > min(open, close), low > high, or price <= 0",
        }
        rows = [{"check": c, "count": getattr(self, c), "ok": getattr(self, c) == 0, "description": about[c]}
                for c in self.CHECKS]
        return pd.DataFrame(rows).set_index("check")


def quality_report(df: pd.DataFrame, timeframe: str = "1m") -> QualityReport:
    """Check a bars frame as it is (before sorting or dedup): gaps, duplicates, NaNs, time order, zero volume,
    OHLC sanity."""
    step = timeframe_delta(timeframe)
    raw = normalise_bars(df)
    idx = raw.index
    i8 = idx.asi8
    non_monotonic = int((np.diff(i8) < 0).sum()) if len(i8) > 1 else 0
    duplicates = int(idx.duplicated().sum())
    uniq = np.unique(i8)
    gap_list: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    missing = 0
    if len(uniq) > 1:
        d = np.diff(uniq)
        where = np.flatnonzero(d > step.value)
        for k in where:
            first, last = uniq[k] + step.value, uniq[k + 1] - step.value
            gap_list.append((pd.Timestamp(first, tz="UTC"), pd.Timestamp(last, tz="UTC")))
        missing = int(((d[where] - 1) // step.value).sum())
    o, h, lo, c, v = (raw[col].to_numpy() for col in BARS_COLUMNS)
    with np.errstate(invalid="ignore"):
        bad_ohlc = (
            (h < np.fmax(o, c)) | (lo > np.fmin(o, c)) | (lo > h) | (o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0)
        )
    return QualityReport(
        bars=len(raw),
        start=pd.Timestamp(uniq[0], tz="UTC") if len(uniq) else None,
        end=pd.Timestamp(uniq[-1], tz="UTC") if len(uniq) else None,
        timeframe=timeframe,
        gaps=len(gap_list),
        missing_bars=missing,
        gap_list=gap_list,
        duplicates=duplicates,
        nans=int(raw.isna().any(axis=1).sum()),
        non_monotonic=non_monotonic,
        zero_volume=int((v == 0).sum()),
        ohlc_inconsistent=int(bad_ohlc.sum()),
    )
