"""Event calendars: dated windows in which no new entry fills (``TimeRestrictions.events``).

:func:`load_events` reads an iCalendar file (``.ics``: each VEVENT's DTSTART/DTEND and SUMMARY; an
all-day event covers its days in UTC; an event without DTEND lasts ``default_length``) or a CSV
file (columns ``start``, ``end`` and optionally ``name``; times in ISO 8601, naive means UTC). A bad
event or row is skipped and reported on its own — the others still load. Recurring events (RRULE)
are not expanded: export the occurrences (most calendar apps do) or list them in a CSV.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from workbench.config import EventWindow
from workbench.domain import to_utc


@dataclass
class Calendar:
    """The events a file holds, and what could not be read (one line per skipped event or row)."""

    events: list[EventWindow] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def load_events(path: str | Path, *, default_length: timedelta = timedelta(hours=1)) -> Calendar:
    """The events of an ``.ics`` or ``.csv`` calendar file, in start order."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no event calendar at {p}; give an .ics or .csv file")
    if p.suffix.lower() == ".ics":
        out = _ics(p, default_length)
    elif p.suffix.lower() == ".csv":
        out = _csv(p)
    else:
        raise ValueError(f"{p}: an event calendar is an .ics (iCalendar) or .csv (start,end,name) file")
    out.events.sort(key=lambda e: e.start)
    return out


def _window(name: Any, start: Any, end: Any) -> EventWindow:
    try:
        return EventWindow(name=str(name or "event"), start=start, end=end)
    except ValidationError as e:
        raise ValueError("; ".join(err["msg"].removeprefix("Value error, ") for err in e.errors())) from None


def _csv(p: Path) -> Calendar:
    out = Calendar()
    with p.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"start", "end"} - {c.strip().lower() for c in reader.fieldnames or []}
        if missing:
            raise ValueError(f"{p}: the header needs columns start,end (and optionally name); "
                             f"missing {', '.join(sorted(missing))}")
        for n, row in enumerate(reader, start=2):
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
            try:
                start, end = to_utc(row["start"], "start"), to_utc(row["end"], "end")
                out.events.append(_window(row.get("name"), start.to_pydatetime(), end.to_pydatetime()))
            except ValueError as e:
                out.problems.append(f"{p.name} row {n}: {e}")
    return out


def _ics(p: Path, default_length: timedelta) -> Calendar:
    import icalendar

    out = Calendar()
    try:
        cal = icalendar.Calendar.from_ical(p.read_bytes())
    except ValueError as e:
        raise ValueError(f"{p}: not an iCalendar file ({e})") from None
    for n, ev in enumerate(cal.walk("VEVENT"), start=1):
        name = str(ev.get("SUMMARY") or f"event {n}")
        try:
            if ev.get("RRULE") is not None:
                raise ValueError("recurring (RRULE) events are not expanded; export its occurrences")
            if ev.get("DTSTART") is None:
                raise ValueError("no DTSTART")
            start = _ics_time(ev.decoded("DTSTART"))
            if ev.get("DTEND") is not None:
                end = _ics_time(ev.decoded("DTEND"))
            elif isinstance(ev.decoded("DTSTART"), datetime):
                end = start + default_length
            else:
                end = start + timedelta(days=1)
            out.events.append(_window(name, start, end))
        except ValueError as e:
            out.problems.append(f"{p.name} event {name!r}: {e}")
    return out


def _ics_time(v: date | datetime) -> datetime:
    """An iCalendar DTSTART/DTEND as aware UTC: a date is its midnight UTC, a floating time is UTC."""
    if not isinstance(v, datetime):
        return datetime(v.year, v.month, v.day, tzinfo=timezone.utc)
    return v.replace(tzinfo=timezone.utc) if v.tzinfo is None else v.astimezone(timezone.utc)
