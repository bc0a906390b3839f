"""Change freezes: whether a moment falls in a freeze window, and until when.

Three kinds of freeze stop a service's traffic from widening (a rollout start, a step
into a wider cohort, a promotion, a prompt promotion); none of them stops a rollback,
a pause or an abort:

- a **weekly** window, from a weekday and time to a weekday and time in a time zone
  (``Fri 16:00`` to ``Mon 08:00``, Europe/London). The window is read on the local wall
  clock, so it follows daylight saving: 16:00 on Friday is 16:00 in winter and summer.
  A window whose end comes before its start in the week wraps over the week's end;
- **dates**: whole local days (public holidays), midnight to midnight in the zone;
- a **manual** freeze an operator set with ``releaser freeze``, until a UTC time.

Everything here is pure: the caller passes ``now`` (an aware datetime). Time zones
come from the IANA database through :mod:`zoneinfo`, which is read-only data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from releaser.errors import BadInput

__all__ = [
    "DAYS",
    "MAX_FREEZE_DAYS",
    "MINUTES_PER_WEEK",
    "ActiveFreeze",
    "DatesWindow",
    "FreezeKind",
    "ManualFreeze",
    "WeeklyWindow",
    "active_freezes",
    "format_utc",
    "parse_instant",
    "parse_until",
    "parse_weekly_point",
    "zone",
]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Weekday names as windows write them (Monday first, as :meth:`datetime.weekday`)."""
MINUTES_PER_WEEK = 7 * 24 * 60
MAX_FREEZE_DAYS = 366
"""Longest manual freeze (``--until``), and most dates one window may list."""

FreezeKind = Literal["weekly", "dates", "manual"]

_POINT = re.compile(r"^\s*([A-Za-z]{3,9})\s+([01]?\d|2[0-3]):([0-5]\d)\s*$")
_RELATIVE = re.compile(r"^\s*(\d{1,6})\s*([mhdw])\s*$")
_UNIT_MINUTES = {"m": 1, "h": 60, "d": 1440, "w": 10080}
_FULL = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_NUMBERS = {name: i for names in (DAYS, _FULL) for i, name in enumerate(names)}


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``Europe/London``); BadInput when it is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadInput(
            f"unknown time zone {name!r}",
            hint="use an IANA name such as 'Europe/London' or 'UTC'",
        ) from None


def parse_weekly_point(text: str) -> int:
    """Minute of the week (0 = Monday 00:00) of ``"Fri 16:00"``; BadInput otherwise."""
    found = _POINT.match(text) if isinstance(text, str) else None
    day = _DAY_NUMBERS.get(found.group(1).lower()) if found else None
    if found is None or day is None:
        raise BadInput(
            f"{text!r} is not a weekday and a time",
            hint="write a day and a 24-hour time, e.g. 'Fri 16:00' or 'Monday 08:00'",
        )
    return day * 1440 + int(found.group(2)) * 60 + int(found.group(3))


def parse_instant(text: str) -> datetime:
    """An aware UTC datetime from ISO 8601 text (``Z`` or an offset; naive means UTC)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise BadInput(
            f"{text!r} is not an ISO 8601 time",
            hint="write e.g. 2026-12-24T18:00:00Z, or a duration such as 2h, 3d or 90m",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parse_until(text: str, now: datetime) -> datetime:
    """The end of a manual freeze: ISO 8601, or a duration from ``now`` (``2h``, ``3d``).

    Refuses a time that is not after ``now`` and one more than a year ahead.
    """
    relative = _RELATIVE.match(text) if isinstance(text, str) else None
    if relative:
        until = now + timedelta(minutes=int(relative.group(1)) * _UNIT_MINUTES[relative.group(2)])
    else:
        until = parse_instant(text)
    if until <= now:
        raise BadInput(
            f"--until {text.strip()} ({format_utc(until)}) is not in the future "
            f"(now is {format_utc(now)})",
            hint="give a later time, or a duration such as 2h",
        )
    if until - now > timedelta(days=MAX_FREEZE_DAYS):
        raise BadInput(
            f"--until {text.strip()} is more than {MAX_FREEZE_DAYS} days ahead",
            hint="declare a long freeze as dates or a weekly window in releaser.yaml",
        )
    return until


def format_utc(moment: datetime) -> str:
    """``2026-12-24T18:00:00Z``: UTC, to the second, as freezes are shown and stored."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ActiveFreeze:
    """A freeze in force at a moment: its name, kind, end (UTC) and why."""

    name: str
    kind: FreezeKind
    until: str
    reason: str = ""

    def describe(self) -> str:
        """One line naming the freeze, for refusals and holds."""
        why = f": {self.reason}" if self.reason else ""
        return f"change freeze '{self.name}' ({self.kind}) until {self.until}{why}"

    def to_dict(self) -> dict[str, str]:
        """The documented JSON shape of a freeze in force."""
        return {"name": self.name, "kind": self.kind, "until": self.until, "reason": self.reason}


@dataclass(frozen=True)
class WeeklyWindow:
    """A freeze from one weekday and time to another, every week, on a local clock."""

    name: str
    start: int
    end: int
    timezone: str = "UTC"
    reason: str = ""

    def active(self, now: datetime) -> ActiveFreeze | None:
        """The freeze when ``now`` falls in the window, else None."""
        tz = zone(self.timezone)
        local = now.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0)
        minute = local.weekday() * 1440 + local.hour * 60 + local.minute
        if self.start < self.end:
            inside = self.start <= minute < self.end
        else:  # wraps over Sunday midnight (or covers the whole week when start == end)
            inside = minute >= self.start or minute < self.end
        if not inside:
            return None
        ahead = (self.end - minute) % MINUTES_PER_WEEK or MINUTES_PER_WEEK
        # Wall-clock arithmetic: the end is the local time the window names, DST or not.
        until = (local + timedelta(minutes=ahead)).replace(tzinfo=tz)
        return ActiveFreeze(self.name, "weekly", format_utc(until), self.reason)


@dataclass(frozen=True)
class DatesWindow:
    """A freeze over whole local days (public holidays), in a time zone."""

    name: str
    dates: frozenset[date]
    timezone: str = "UTC"
    reason: str = ""

    def active(self, now: datetime) -> ActiveFreeze | None:
        """The freeze when ``now``'s local date is listed, ending after the run of dates."""
        tz = zone(self.timezone)
        day = now.astimezone(tz).date()
        if day not in self.dates:
            return None
        while day in self.dates:
            day += timedelta(days=1)
        until = datetime(day.year, day.month, day.day, tzinfo=tz)
        return ActiveFreeze(self.name, "dates", format_utc(until), self.reason)


@dataclass(frozen=True)
class ManualFreeze:
    """A freeze an operator set: until a UTC time, with a reason, by someone."""

    until: str
    reason: str
    by: str = ""
    at: str = ""
    name: str = "manual"

    def active(self, now: datetime) -> ActiveFreeze | None:
        """The freeze while ``now`` is before its end, else None."""
        if now >= parse_instant(self.until):
            return None
        by = f" (set by {self.by})" if self.by else ""
        return ActiveFreeze(self.name, "manual", self.until, f"{self.reason}{by}")


def active_freezes(
    windows: Iterable[WeeklyWindow | DatesWindow],
    manual: ManualFreeze | None,
    now: datetime,
) -> list[ActiveFreeze]:
    """Every freeze in force at ``now`` (aware): the manual one first, then windows in order."""
    if now.tzinfo is None:
        raise BadInput("a freeze check needs an aware time", hint="pass now with a time zone")
    found: Sequence[ActiveFreeze | None] = [
        manual.active(now) if manual is not None else None,
        *(w.active(now) for w in windows),
    ]
    return [f for f in found if f is not None]
