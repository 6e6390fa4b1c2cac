"""Bars from a CSV file: any common layout of time + open/high/low/close/volume columns."""
from __future__ import annotations

import csv as _csv
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.data.schema import BARS_COLUMNS, BarsError, normalise_bars, validate_bars

TIME_COLUMNS = ("date", "datetime", "time", "timestamp", "open_time")
ALIASES = {"o": "open", "h": "high", "l": "low", "c": "close", "v": "volume", "vol": "volume"}
_DATE_FORMATS = {
    "ymd": ("%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d"),
    "dmy": ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y"),
    "mdy": ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y"),
}


def _delimiter(path: Path) -> str:
    with path.open(newline="") as f:
        head = f.readline()
    try:
        return _csv.Sniffer().sniff(head, delimiters=",;\t|").delimiter
    except _csv.Error:
        return ","


def _epoch(values: pd.Series) -> pd.DatetimeIndex:
    """Epoch numbers to UTC times; seconds, milliseconds, microseconds or nanoseconds told apart by magnitude."""
    mag = float(np.nanmedian(np.abs(values.to_numpy(dtype="float64"))))
    unit = "s" if mag < 1e11 else "ms" if mag < 1e14 else "us" if mag < 1e17 else "ns"
    return pd.DatetimeIndex(pd.to_datetime(values, unit=unit, utc=True))


def parse_times(raw: pd.Series, where: str = "time column") -> pd.DatetimeIndex:
    """Parse a column of times into a UTC index: ISO 8601 (offsets honoured, naive = UTC), ``YYYY/MM/DD``,
    ``DD/MM/YYYY`` and ``DD.MM.YYYY`` (with optional ``HH:MM[:SS]``), ``MM/DD/YYYY`` when no row reads as
    day-first, or epoch seconds/milliseconds. Raises :class:`BarsError` naming the first row that fails.
    """
    if raw.isna().any():
        row = int(np.argmax(raw.isna().to_numpy()))
        raise BarsError(f"{where}: data row {row + 1} (line {row + 2}) has no time; fill it in or drop the row")
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        return _epoch(raw)
    text = raw.astype(str).str.strip()
    numeric = pd.to_numeric(text, errors="coerce")
    if numeric.notna().all():
        return _epoch(numeric)
    best: tuple[int, pd.DatetimeIndex] | None = None
    candidates = [("iso", "ISO8601")] + [(k, f) for k, fs in _DATE_FORMATS.items() for f in fs]
    first = text.iloc[:1]
    full: dict[str, pd.DatetimeIndex] = {}
    for kind, fmt in candidates:
        if kind in full or pd.to_datetime(first, format=fmt, errors="coerce", utc=True).isna().all():
            continue  # the first row rules this format out
        parsed = pd.DatetimeIndex(pd.to_datetime(text, format=fmt, errors="coerce", utc=True))
        bad = int(parsed.isna().sum())
        if bad == 0:
            full[kind] = parsed
        elif best is None or bad < best[0]:
            best = (bad, parsed)
    if "dmy" in full and "mdy" in full:  # ambiguous: prefer the reading in time order, else day-first
        mdy_only = full["mdy"].is_monotonic_increasing and not full["dmy"].is_monotonic_increasing
        return full["mdy"] if mdy_only else full["dmy"]
    for kind in ("iso", "ymd", "dmy", "mdy"):
        if kind in full:
            return full[kind]
    row = int(np.argmax(best[1].isna())) if best else 0
    raise BarsError(
        f"{where}: cannot read {text.iloc[row]!r} (data row {row + 1}, line {row + 2}) as a time; use ISO 8601 "
        "(2024-01-31 13:45:00), DD/MM/YYYY HH:MM, or epoch seconds/milliseconds"
    )


def read_csv_bars(path: str | Path, *, raw: bool = False) -> pd.DataFrame:
    """Read bars from a CSV file: column names case-insensitive, the time column named date/datetime/time/
    timestamp/open_time (else the first column), times parsed by :func:`parse_times`, naive times as UTC.

    Returns a validated bars frame (sorted, duplicates dropped); ``raw=True`` keeps the file's row order and
    duplicates so :func:`~workbench.data.schema.quality_report` can see them. Errors name the file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise BarsError(f"{path}: no such file; give the path of a CSV file with time, open, high, low, close, volume")
    try:
        df = pd.read_csv(path, sep=_delimiter(path), skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise BarsError(f"{path}: not a readable CSV file ({e})") from e
    df.columns = [ALIASES.get(c, c) for c in (str(c).strip().lower() for c in df.columns)]
    if df.empty:
        raise BarsError(f"{path}: the file has a header but no rows")
    if "date" in df.columns and "time" in df.columns:  # separate date and time-of-day columns
        times = df.pop("date").astype(str).str.strip() + " " + df.pop("time").astype(str).str.strip()
    else:
        name = next((c for c in TIME_COLUMNS if c in df.columns), df.columns[0])
        if name in BARS_COLUMNS:
            raise BarsError(f"{path}: no time column; name it one of {', '.join(TIME_COLUMNS)} or put it first")
        times = df.pop(name)
    try:
        df.index = parse_times(times.reset_index(drop=True), where=f"{path}")
        bars = normalise_bars(df) if raw else validate_bars(df)
    except BarsError as e:
        msg = str(e)
        raise BarsError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from e
    return bars
