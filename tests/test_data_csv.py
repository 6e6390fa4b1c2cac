"""CSV import: common layouts and time formats, and errors that name the file, column or row."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workbench.data import (
    BarsError,
    bar_interval,
    check_timeframe,
    interval_name,
    quality_report,
    read_csv_bars,
    resample_bars,
    sample_bars,
)

ROWS = "1,2,0.5,1.5,10\n"


def write(tmp_path: Path, text: str, name: str = "bars.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "header,times,expected",
    [
        ("Date", ["2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z"], ["2024-01-01 00:00", "2024-01-01 00:01"]),
        ("datetime", ["2024-01-01 02:00:00+02:00", "2024-01-01 02:01:00+02:00"],
         ["2024-01-01 00:00", "2024-01-01 00:01"]),
        ("TIME", ["2024-01-01 00:00", "2024-01-01 00:01"], ["2024-01-01 00:00", "2024-01-01 00:01"]),
        ("timestamp", ["2024-03-05 10:00:30", "2024-03-05 10:01:30"], ["2024-03-05 10:00:30", "2024-03-05 10:01:30"]),
        ("date", ["13/01/2024 10:00", "13/01/2024 10:01"], ["2024-01-13 10:00", "2024-01-13 10:01"]),
        # ambiguous: day first
        ("date", ["02/03/2024 10:00", "02/03/2024 10:01"], ["2024-03-02 10:00", "2024-03-02 10:01"]),
        ("date", ["01/13/2024", "01/14/2024"], ["2024-01-13", "2024-01-14"]),  # only month-first fits
        ("date", ["01/12/2024", "01/13/2024"], ["2024-01-12", "2024-01-13"]),  # day-first fails on row 2
        ("date", ["2024/01/31 23:59", "2024/02/01 00:00"], ["2024-01-31 23:59", "2024-02-01 00:00"]),
        ("date", ["31.01.2024 23:59", "01.02.2024 00:00"], ["2024-01-31 23:59", "2024-02-01 00:00"]),
        ("open_time", ["1704067200000", "1704067260000"], ["2024-01-01 00:00", "2024-01-01 00:01"]),  # epoch ms
        ("unix", ["1704067200", "1704067260"], ["2024-01-01 00:00", "2024-01-01 00:01"]),  # epoch s, first column
    ],
)
def test_time_formats(tmp_path, header, times, expected):
    path = write(tmp_path, f"{header},Open,High,Low,Close,Volume\n" + "".join(f"{t},{ROWS}" for t in times))
    bars = read_csv_bars(path)
    assert list(bars.index) == [pd.Timestamp(e, tz="UTC") for e in expected]
    assert bars["close"].tolist() == [1.5, 1.5]


def test_semicolons_aliases_and_split_date_time(tmp_path):
    path = write(tmp_path, "Date;Time;O;H;L;C;Vol\n2024.01.02;10:00;1;2;0.5;1.5;10\n2024.01.02;10:01;1;2;0.5;1.5;11\n")
    bars = read_csv_bars(path)
    assert bars.index[1] == pd.Timestamp("2024-01-02 10:01", tz="UTC")
    assert bars["volume"].tolist() == [10.0, 11.0]


def test_round_trip_of_sample_bars(tmp_path):
    bars = sample_bars("ETH/USDT", days=1)
    iso = tmp_path / "iso.csv"
    bars.to_csv(iso)
    ms = tmp_path / "ms.csv"
    bars.set_axis(bars.index.asi8 // 1_000_000).rename_axis("timestamp").to_csv(ms)
    for path in (iso, ms):
        got = read_csv_bars(path)
        pd.testing.assert_index_equal(got.index, bars.index, check_exact=True)
        np.testing.assert_allclose(got.to_numpy(), bars.to_numpy(), rtol=1e-12)


def test_raw_keeps_file_order_for_the_quality_report(tmp_path):
    path = write(
        tmp_path,
        "time,open,high,low,close,volume\n"
        + "".join(f"2024-01-01 00:0{m},{ROWS}" for m in (0, 2, 1, 1, 5)),
    )
    report = quality_report(read_csv_bars(path, raw=True))
    assert report.non_monotonic == 1 and report.duplicates == 1 and report.gaps == 1 and report.missing_bars == 2
    clean = read_csv_bars(path)
    assert clean.index.is_monotonic_increasing and len(clean) == 4


def test_missing_file(tmp_path):
    with pytest.raises(BarsError, match=r"nope\.csv: no such file"):
        read_csv_bars(tmp_path / "nope.csv")


def test_missing_columns_named_with_file(tmp_path):
    path = write(tmp_path, "date,open,high,close\n2024-01-01,1,2,1\n")
    with pytest.raises(BarsError, match=r"bars\.csv: bars are missing column\(s\) low, volume"):
        read_csv_bars(path)


def test_first_unparseable_row_is_named(tmp_path):
    path = write(tmp_path, "date,open,high,low,close,volume\n2024-01-01 00:00," + ROWS + "2024-01-01 00:01," + ROWS
                 + "yesterday," + ROWS)
    with pytest.raises(BarsError, match=r"bars\.csv: cannot read 'yesterday' \(data row 3, line 4\)"):
        read_csv_bars(path)


def test_empty_time_is_named(tmp_path):
    path = write(tmp_path, "date,open,high,low,close,volume\n2024-01-01 00:00," + ROWS + "," + ROWS)
    with pytest.raises(BarsError, match=r"data row 2 \(line 3\) has no time"):
        read_csv_bars(path)


def test_non_numeric_price_is_named(tmp_path):
    path = write(tmp_path, "date,open,high,low,close,volume\n2024-01-01 00:00,1,2,0.5,abc,10\n")
    with pytest.raises(BarsError, match=r"bars\.csv: column 'close' has a non-numeric value 'abc'"):
        read_csv_bars(path)


def test_no_time_column(tmp_path):
    path = write(tmp_path, "open,high,low,close,volume\n" + ROWS)
    with pytest.raises(BarsError, match="no time column"):
        read_csv_bars(path)


def test_header_only(tmp_path):
    with pytest.raises(BarsError, match="no rows"):
        read_csv_bars(write(tmp_path, "date,open,high,low,close,volume\n"))


# ---- the file's own interval, and resampling to a coarser timeframe ---------------------------
def test_bar_interval_is_the_most_common_step(tmp_path):
    bars = sample_bars("BTC/USDT", "5m", days=1)
    holed = bars.drop(bars.index[[10, 11, 12, 40]])  # gaps of 20 and 10 minutes
    odd = pd.concat([holed, holed.iloc[[50]].set_axis([holed.index[50] + pd.Timedelta("1min")])]).sort_index()
    path = tmp_path / "odd.csv"
    odd.to_csv(path)
    assert bar_interval(read_csv_bars(path).index) == pd.Timedelta("5min")  # not the 1-minute step, the gaps
    assert bar_interval(bars.index[:1]) is None
    assert [interval_name(pd.Timedelta(t)) for t in ("5min", "1h", "90min", "1D", "30s")] == [
        "5m", "1h", "90m", "1d", "30s"]


def test_five_minute_bars_resample_to_an_hour_and_refuse_a_minute(tmp_path):
    minutes = sample_bars("BTC/USDT", days=2)
    five = resample_bars(minutes, "5m")
    assert len(five) == 2 * 288 and five["volume"].sum() == pytest.approx(minutes["volume"].sum())
    assert resample_bars(five, "5m") is five  # already at the timeframe: unchanged
    pd.testing.assert_frame_equal(resample_bars(five, "1h"), resample_bars(minutes, "1h"), check_freq=False)
    with pytest.raises(BarsError) as info:
        resample_bars(five, "1m")
    assert ("the bars are 5m apart, coarser than the timeframe '1m'; set the timeframe to the data's own ('5m') "
            "or a coarser one") in str(info.value)
    assert check_timeframe(pd.Timedelta("5min"), "15m") == pd.Timedelta("15min")
