"""Trading calendars: which phase an instrument is in at a log time, and until when.

Pure functions of the calendar and the time, so every node computes the same phase
at the same entry. Wall-clock times are converted with the IANA database shipped as
the `tzdata` package (never the host's), so a daylight-saving change happens at
the same instant on every node.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import importlib.resources
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from engine.codes import TradingPhase

DAY_S = 86_400
ALL_WEEKDAYS = 0b1111111
# How many days without a session a closed phase looks through for its end: beyond that
# (a calendar of holidays only) it is checked again each day.
CLOSED_DAYS_MAX = 32


@dataclass(frozen=True, slots=True)
class Calendar:
    """A trading day's shape (see engine.commands.SetCalendar for the fields' meaning)."""

    time_zone: str
    pre_open_s: int
    open_s: int
    pre_close_s: int
    close_s: int
    post_close_s: int
    day_s: int
    trading_days: int
    holidays: str

    def fields(self) -> tuple:
        return (
            self.time_zone,
            self.pre_open_s,
            self.open_s,
            self.pre_close_s,
            self.close_s,
            self.post_close_s,
            self.day_s,
            self.trading_days,
            self.holidays,
        )


@dataclass(frozen=True, slots=True)
class Session:
    """Where a calendar stands at one instant."""

    phase: int
    until_ms: int  # when the phase ends (the next boundary), always after the instant
    start_ms: int  # when this session (trading day) started: its pre-open
    close_ms: int  # when its closing auction is due; DAY orders expire then
    local_date: str  # the session's date on the exchange's wall clock


def calendar_problem(calendar: Calendar) -> str:
    """Why a calendar cannot be used ("" if it can)."""
    if not calendar.time_zone:
        return ""
    try:
        zone_of(calendar.time_zone)
    except (ValueError, OSError, ModuleNotFoundError):
        return f"unknown time zone {calendar.time_zone!r}"
    day = calendar.day_s
    if day < 60 or DAY_S % day:
        return "a session lasts a whole divisor of a day, at least 60 s"
    times = (
        calendar.pre_open_s,
        calendar.open_s,
        calendar.pre_close_s,
        calendar.close_s,
        calendar.post_close_s,
    )
    if not 0 <= times[0] < times[1] < times[2] < times[3] <= times[4] <= day:
        return "times must satisfy 0 <= pre-open < open < pre-close < close <= post-close <= day"
    if not 0 < calendar.trading_days <= ALL_WEEKDAYS:
        return "trading days are a mask of weekdays, bit 0 Monday"
    try:
        holidays(calendar.holidays)
    except ValueError:
        return "holidays are ISO dates (YYYY-MM-DD) separated by commas"
    return ""


@functools.lru_cache(maxsize=64)
def zone_of(name: str) -> ZoneInfo:
    """The zone from the tzdata package (never the host's files)."""
    parts = name.split("/")
    if not name or any(not part or part.startswith(".") for part in parts):
        raise ValueError(name)
    resource = importlib.resources.files("tzdata.zoneinfo").joinpath(*parts)
    with resource.open("rb") as f:
        return ZoneInfo.from_file(f, key=name)


@functools.lru_cache(maxsize=64)
def holidays(text: str) -> frozenset[dt.date]:
    return frozenset(dt.date.fromisoformat(day.strip()) for day in text.split(",") if day.strip())


def session_at(calendar: Calendar, ts_ms: int) -> Session:
    """The phase at `ts_ms` and when it next changes (a closed evening runs on through a
    weekend or holidays until the next pre-open), in the session containing the instant."""
    session = _session_at(calendar, ts_ms)
    until = session.until_ms
    for _ in range(CLOSED_DAYS_MAX):
        following = _session_at(calendar, until)
        if following.phase != session.phase:
            break
        until = following.until_ms
    return dataclasses.replace(session, until_ms=until)


def _session_at(calendar: Calendar, ts_ms: int) -> Session:
    zone = zone_of(calendar.time_zone)
    local = dt.datetime.fromtimestamp(ts_ms / 1000, zone)
    date = local.date()
    wall_s = local.hour * 3600 + local.minute * 60 + local.second
    day = calendar.day_s
    start_s = wall_s // day * day
    offset = wall_s - start_s
    if not _trades_on(calendar, date):
        midnight = _instant(zone, date, DAY_S)
        return Session(TradingPhase.CLOSED, max(midnight, ts_ms + 1), 0, 0, date.isoformat())
    bounds = (
        (calendar.pre_open_s, TradingPhase.CLOSED),
        (calendar.open_s, TradingPhase.PRE_OPEN),
        (calendar.pre_close_s, TradingPhase.CONTINUOUS),
        (calendar.close_s, TradingPhase.PRE_CLOSE),
        (calendar.post_close_s, TradingPhase.POST_CLOSE),
        (day, TradingPhase.CLOSED),
    )
    phase, bound = next((p, b) for b, p in bounds if offset < b)
    until = _instant(zone, date, start_s + bound)
    start = _instant(zone, date, start_s + calendar.pre_open_s)
    close = _instant(zone, date, start_s + calendar.close_s)
    # A wall-clock time that a daylight-saving change skips or repeats maps to an instant
    # at or before now: move on by a second rather than stand still.
    return Session(int(phase), max(until, ts_ms + 1), start, close, date.isoformat())


def _trades_on(calendar: Calendar, date: dt.date) -> bool:
    return bool(calendar.trading_days >> date.weekday() & 1) and date not in holidays(
        calendar.holidays
    )


def _instant(zone: ZoneInfo, date: dt.date, wall_s: int) -> int:
    """Milliseconds since the epoch of a wall-clock time `wall_s` after local midnight."""
    midnight = dt.datetime(date.year, date.month, date.day, tzinfo=zone)
    local = midnight + dt.timedelta(seconds=wall_s)
    # Wall-clock arithmetic (aware + timedelta keeps the zone and re-reads its offset).
    return int(local.timestamp() * 1000)


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_clock(text: str) -> int:
    """Seconds after midnight of `HH:MM` or `HH:MM:SS` (up to 24:00:00, a day's end)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() and len(p) == 2 for p in parts):
        raise ValueError(f"{text!r} is not HH:MM or HH:MM:SS")
    hours, minutes, seconds = (int(p) for p in (*parts, "00")[:3])
    total = hours * 3600 + minutes * 60 + seconds
    if minutes > 59 or seconds > 59 or total > DAY_S:
        raise ValueError(f"{text!r} is not a time of day")
    return total


def parse_weekdays(text: str) -> int:
    """A weekday mask (bit 0 Monday) from `mon-fri`, `mon,wed,fri` or a mix of both."""
    mask = 0
    for part in text.lower().split(","):
        first, _, last = part.strip().partition("-")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            raise ValueError(f"{part!r}: weekdays are {', '.join(WEEKDAYS)}")
        start, end = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
        if end < start:
            raise ValueError(f"{part!r}: a range runs forward through the week")
        for day in range(start, end + 1):
            mask |= 1 << day
    return mask
