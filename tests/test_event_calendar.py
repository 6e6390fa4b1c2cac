"""Dated event windows (an event calendar) block new entries identically in backtests and sessions."""
from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import pytest

from tests.kit import bars_for, paper_config
from workbench.backtest import run_backtest
from workbench.data.calendar import load_events
from workbench.engine.trader import replay
from workbench.execution import time_block

ICS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VEVENT
UID:1
SUMMARY:FOMC rate decision
DTSTART:20240101T030000Z
DTEND:20240101T050000Z
END:VEVENT
BEGIN:VEVENT
UID:2
SUMMARY:Exchange maintenance
DTSTART;VALUE=DATE:20240103
END:VEVENT
BEGIN:VEVENT
UID:3
SUMMARY:Weekly call
DTSTART:20240102T100000Z
RRULE:FREQ=WEEKLY
END:VEVENT
BEGIN:VEVENT
UID:4
SUMMARY:CPI print
DTSTART:20240102T123000Z
END:VEVENT
END:VCALENDAR
"""


def test_ics_and_csv_calendars_load_with_each_bad_event_skipped_on_its_own(tmp_path):
    ics = tmp_path / "events.ics"
    ics.write_text(ICS)
    cal = load_events(ics)
    assert [(e.name, e.start.isoformat(), e.end.isoformat()) for e in cal.events] == [
        ("FOMC rate decision", "2024-01-01T03:00:00+00:00", "2024-01-01T05:00:00+00:00"),
        ("CPI print", "2024-01-02T12:30:00+00:00", "2024-01-02T13:30:00+00:00"),  # no DTEND: an hour
        ("Exchange maintenance", "2024-01-03T00:00:00+00:00", "2024-01-04T00:00:00+00:00"),  # all day
    ]
    assert len(cal.problems) == 1 and "Weekly call" in cal.problems[0] and "RRULE" in cal.problems[0]
    csv = tmp_path / "events.csv"
    csv.write_text("start,end,name\n2024-01-01T03:00,2024-01-01T05:00,FOMC\n"
                   "2024-01-02T09:00,2024-01-02T08:00,backwards\nsoon,later,garbage\n"
                   "2024-01-05 10:00+01:00,2024-01-05 11:00+01:00,CET\n")
    cal = load_events(csv)
    assert [e.name for e in cal.events] == ["FOMC", "CET"] and cal.events[1].start.hour == 9
    assert cal.problems[0].startswith("events.csv row 3:") and "ends" in cal.problems[0]
    assert cal.problems[1].startswith("events.csv row 4:")
    (tmp_path / "bad.csv").write_text("when,name\n")
    with pytest.raises(ValueError, match="needs columns start,end"):
        load_events(tmp_path / "bad.csv")
    with pytest.raises(ValueError, match=r"an \.ics \(iCalendar\) or \.csv"):
        load_events(ics.rename(tmp_path / "events.txt"))


def test_an_event_window_blocks_entries_in_the_backtest_and_the_session_alike():
    base = paper_config(params={"fast": 3, "slow": 8}, start="2024-01-01", end="2024-01-02")
    frames = bars_for(base, days=1)
    free = run_backtest(base, bars=frames).trades
    window = (pd.Timestamp("2024-01-01T06:00Z"), pd.Timestamp("2024-01-01T12:00Z"))
    inside = free[(free.entry_time >= window[0]) & (free.entry_time < window[1])]
    assert len(inside) >= 2  # without the event, trades enter in the window (so the test can fail)
    cfg = base.replace(time={"events": [{"name": "FOMC", "start": window[0].isoformat(),
                                         "end": window[1].isoformat()}]})
    assert time_block(datetime(2024, 1, 1, 7, tzinfo=timezone.utc), cfg.time) == "event"
    assert time_block(datetime(2024, 1, 1, 12, tzinfo=timezone.utc), cfg.time) == ""  # the end is outside
    bt = run_backtest(cfg, bars=frames).trades
    assert not ((bt.entry_time >= window[0]) & (bt.entry_time < window[1])).any()
    session = replay(cfg, frames, include_open=True)
    cols = ["symbol", "entry_time", "exit_time", "exit_reason"]

    def same(t: pd.DataFrame) -> pd.DataFrame:
        t = t[cols].reset_index(drop=True)
        return t.astype({"entry_time": "datetime64[ns, UTC]", "exit_time": "datetime64[ns, UTC]"})
    pd.testing.assert_frame_equal(same(session), same(bt), check_dtype=False)


def test_an_event_that_ends_before_it_starts_is_refused_with_both_times():
    with pytest.raises(ValueError, match="ends .* before it starts"):
        paper_config(time={"events": [{"name": "x", "start": "2024-01-02", "end": "2024-01-01"}]})



def test_the_backtest_and_report_commands_take_an_event_calendar(tmp_path, caplog):
    from workbench.cli import build_parser, config_from_args
    from workbench.reports.flags import apply_settings

    cal = tmp_path / "events.csv"
    cal.write_text("start,end,name\n2024-01-01T06:00,2024-01-01T12:00,FOMC\nbad,row,x\n")
    args = build_parser().parse_args(["backtest", "--start", "2024-01-01", "--end", "2024-01-02", "--events", str(cal)])
    config = config_from_args(args)
    assert [(e.name, e.start.hour, e.end.hour) for e in config.time.events] == [("FOMC", 6, 12)]
    assert "events.csv row 3" in caplog.text  # the bad row is skipped, and said so
    with pytest.raises(ValueError, match="--events: no event calendar at"):
        apply_settings({}, {"events": str(tmp_path / "missing.ics")})


def test_a_flattening_event_sells_what_is_held_at_its_first_bar_in_the_backtest_and_the_session_alike():
    base = paper_config(params={"fast": 3, "slow": 8}, start="2024-01-01", end="2024-01-02")
    frames = bars_for(base, days=1)
    free = run_backtest(base, bars=frames).trades
    held = free[(free.exit_time - free.entry_time) > pd.Timedelta(minutes=20)].iloc[0]
    start = held.entry_time + pd.Timedelta(minutes=10)  # inside that trade
    cfg = base.replace(time={"events": [{"name": "CPI", "start": start.isoformat(), "flatten": True,
                                         "end": (start + pd.Timedelta(hours=1)).isoformat()}]})
    bt = run_backtest(cfg, bars=frames).trades
    flat = bt[bt.exit_reason == "event"]
    assert len(flat) == 1 and flat.exit_time.iloc[0] == start and flat.entry_time.iloc[0] == held.entry_time
    assert not ((bt.entry_time >= start) & (bt.entry_time < start + pd.Timedelta(hours=1))).any()
    session = replay(cfg, frames, include_open=True)
    cols = ["symbol", "entry_time", "exit_time", "exit_reason"]

    def same(t: pd.DataFrame) -> pd.DataFrame:
        return t[cols].reset_index(drop=True).astype({"entry_time": "datetime64[ns, UTC]",
                                                      "exit_time": "datetime64[ns, UTC]"})
    pd.testing.assert_frame_equal(same(session), same(bt), check_dtype=False)
