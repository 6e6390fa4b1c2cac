"""Bars schema normalisation and the data quality report: each injected defect is caught by its check."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.data import BARS_COLUMNS, BarsError, quality_report, sample_bars, timeframe_delta, validate_bars
from workbench.data.schema import QualityReport


def test_validate_normalises_names_types_timezone_and_order():
    raw = pd.DataFrame(
        {"Open": [2, 1, 3], "HIGH": [3, 2, 4], "low": [1, 0.5, 2], "Close": [2, 1, 3], "Volume": [10, 20, 30],
         "extra": 1},
        index=pd.to_datetime(["2024-01-01 00:02", "2024-01-01 00:01", "2024-01-01 00:03"]),
    )
    out = validate_bars(raw)
    assert list(out.columns) == list(BARS_COLUMNS)
    assert (out.dtypes == "float64").all()
    assert str(out.index.tz) == "UTC" and out.index.name == "time"
    assert out.index.is_monotonic_increasing
    assert out["open"].tolist() == [1.0, 2.0, 3.0]


def test_validate_converts_other_timezones_and_time_column():
    idx = pd.date_range("2024-01-01 02:00", periods=3, freq="1min", tz="Europe/Berlin")
    df = pd.DataFrame({c: [1.0, 1.0, 1.0] for c in BARS_COLUMNS}, index=idx)
    assert validate_bars(df).index[0] == pd.Timestamp("2024-01-01 01:00", tz="UTC")
    flat = df.reset_index(names="time")
    assert validate_bars(flat).index.equals(validate_bars(df).index)


def test_validate_keeps_last_of_duplicate_times(bars):
    dup = pd.concat([bars.iloc[:3], bars.iloc[[1]].assign(close=123.0)])
    out = validate_bars(dup)
    assert len(out) == 3 and out["close"].iloc[1] == 123.0


def test_missing_columns_are_named(bars):
    with pytest.raises(BarsError, match=r"missing column\(s\) high, volume"):
        validate_bars(bars.drop(columns=["high", "volume"]))


def test_non_datetime_index_is_explained(bars):
    with pytest.raises(BarsError, match="DatetimeIndex"):
        validate_bars(bars.reset_index(drop=True))
    with pytest.raises(BarsError, match="DataFrame"):
        validate_bars([1, 2, 3])


def test_non_numeric_value_is_located(bars):
    bad = bars.iloc[:5].astype({"close": object})
    bad.iloc[3, bad.columns.get_loc("close")] = "n/a"
    with pytest.raises(BarsError, match=r"'close' has a non-numeric value 'n/a' at 2024-01-01 00:03"):
        validate_bars(bad)


@pytest.mark.parametrize("tf,expected", [("1m", "1min"), ("15m", "15min"), ("4h", "4h"), ("1d", "1D"), ("1w", "7D")])
def test_timeframe_delta(tf, expected):
    assert timeframe_delta(tf) == pd.Timedelta(expected)


@pytest.mark.parametrize("tf", ["", "1x", "m", "0m", "1.5h", None])
def test_timeframe_delta_rejects(tf):
    with pytest.raises(BarsError, match="timeframe"):
        timeframe_delta(tf)


def _only(report: QualityReport, check: str) -> None:
    assert not report.ok
    others = {c: getattr(report, c) for c in QualityReport.CHECKS if c != check}
    assert all(v == 0 for v in others.values()), others


def test_clean_bars_pass(bars):
    r = quality_report(bars)
    assert r.ok and r.bars == len(bars) and r.start == bars.index[0] and r.end == bars.index[-1]
    frame = r.to_frame()
    assert list(frame.index) == list(QualityReport.CHECKS) and frame["ok"].all()


def test_gap_is_reported_with_its_missing_stretch(bars):
    holed = bars.drop(bars.index[100:105]).drop(bars.index[500:501])
    r = quality_report(holed)
    _only(r, "gaps")
    assert r.gaps == 2 and r.missing_bars == 6
    assert r.gap_list == [(bars.index[100], bars.index[104]), (bars.index[500], bars.index[500])]
    assert quality_report(holed.resample("1h").last(), "1h").ok  # at 1h every hour still has a bar


def test_duplicates_and_non_monotonic_seen_on_raw_frame(bars):
    r = quality_report(pd.concat([bars.iloc[:10], bars.iloc[[3, 4]]]))
    assert r.duplicates == 2 and r.non_monotonic == 1 and r.gaps == 0
    swapped = bars.iloc[[0, 2, 1, 3, 4]]
    r = quality_report(swapped)
    _only(r, "non_monotonic")
    assert r.non_monotonic == 1


def test_nans(bars):
    b = bars.copy()
    b.iloc[7, 0] = np.nan
    b.iloc[9, 4] = np.nan
    r = quality_report(b)
    _only(r, "nans")
    assert r.nans == 2


def test_zero_volume(bars):
    b = bars.copy()
    b.iloc[[1, 2, 3], 4] = 0.0
    r = quality_report(b)
    _only(r, "zero_volume")
    assert r.zero_volume == 3


@pytest.mark.parametrize(
    "column,value",
    [("high", lambda b: b["close"] * 0.99), ("low", lambda b: b["open"] * 1.01), ("close", lambda b: -1.0)],
)
def test_ohlc_inconsistencies(bars, column, value):
    b = bars.copy()
    b.loc[b.index[5], column] = value(b.loc[b.index[5]])
    r = quality_report(b)
    _only(r, "ohlc_inconsistent")
    assert r.ohlc_inconsistent == 1


def test_low_above_high(bars):
    b = bars.copy()
    row = b.index[5]
    b.loc[row, ["high", "low"]] = b.loc[row, ["low", "high"]].to_numpy()
    assert quality_report(b).ohlc_inconsistent == 1


def test_empty_frame_report():
    r = quality_report(validate_bars(sample_bars(days=1).iloc[:0]))
    assert r.ok and r.bars == 0 and r.start is None
