"""Gap risk from the data (workbench.account.gaps), by hand on a small series, and on the dashboard."""
from __future__ import annotations

import pandas as pd
import pytest

from workbench.account.gaps import gap_exposure, gap_summary, gap_table


def bars_with_gaps() -> pd.DataFrame:
    t = pd.DatetimeIndex(["2024-01-05 23:57", "2024-01-05 23:58", "2024-01-05 23:59",  # Friday
                          "2024-01-08 00:00", "2024-01-08 00:01",  # Monday: a weekend gap
                          "2024-01-08 00:05", "2024-01-08 00:06"], tz="UTC")  # 3 bars missing
    close = [100.0, 101.0, 100.0, 92.0, 93.0, 95.0, 95.0]
    opens = [100.0, 100.0, 101.0, 90.0, 92.0, 96.0, 95.0]
    return pd.DataFrame({"open": opens, "high": close, "low": close, "close": close, "volume": 1.0}, index=t)


def test_gaps_with_their_moves_and_the_weekend_effect():
    t = gap_table(bars_with_gaps(), "1m")
    assert list(t["missing"]) == [2880, 3]  # 2 days 1 minute apart: 2,880 one-minute bars missing
    assert list(t["move"]) == pytest.approx([90 / 100 - 1, 96 / 93 - 1])
    assert t["duration"].iloc[0] == pd.Timedelta(days=2, minutes=1)
    s = gap_summary(t, top=1)
    assert s["largest_moves"]["move"].iloc[0] == pytest.approx(-0.10)
    assert s["longest"]["duration"].iloc[0] == pd.Timedelta(days=2, minutes=1)
    assert s["by_weekday"].set_index("weekday")["worst_drop"].to_dict() == pytest.approx(
        {"Friday": -0.10, "Monday": 96 / 93 - 1})


def test_gap_exposure_is_the_value_times_the_worst_drop_across_a_gap():
    e = gap_exposure({"BTC/USDT": 1_000.0, "ETH/USDT": 500.0}, {"BTC/USDT": bars_with_gaps()}, "1m")
    rows = e.set_index("symbol")
    assert rows.loc["BTC/USDT", "gap_loss"] == pytest.approx(100.0) and rows.loc["BTC/USDT", "gaps"] == 2
    assert rows.loc["ETH/USDT", "gap_loss"] == 0.0 and rows.loc["ETH/USDT", "gaps"] == 0  # no bars: no gaps seen
    assert gap_table(bars_with_gaps().iloc[:3], "1m").empty
