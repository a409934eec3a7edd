"""When a Deployment's schedules are due: cron, interval and rrule entries as time tables.

Role: pure. `parse(spec, created)` reads `spec.schedules` into `Timetable`s, or returns the
first entry CEL could not check (cron syntax, time zone, RRULE) as an `InvalidSchedule`
naming its field and the fix. A Timetable answers "the due times in (after, until]" and "the
next due time after t", always as aware UTC datetimes, so the scheduler
(flowpod_operator._decisions.scheduling) never sees a local time.

Cron and rrule are read on the wall clock of the schedule's time zone (what people mean by
"9:00 in Berlin"): each local time is made aware with zoneinfo's first reading (fold=0). So a
wall-clock time that occurs twice when clocks go back starts once (at its first occurrence),
and one skipped when clocks go forward starts that much later (02:30 becomes 03:30).
Callers: flowpod_operator._decisions.scheduling.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from dateutil import rrule as _rrule

__all__ = ["Timetable", "InvalidSchedule", "parse", "run_name", "DEFAULT_ANCHOR"]

DEFAULT_ANCHOR = datetime(2020, 1, 1, tzinfo=timezone.utc)
_UTC = timezone.utc
_MAX_NAME = 253
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class InvalidSchedule:
    """A schedule the operator cannot read: the field, what is wrong, and the fix."""

    field: str
    problem: str
    fix: str

    @property
    def message(self) -> str:
        return f"{self.field}: {self.problem}; {self.fix}"


@dataclass(frozen=True)
class Timetable:
    """One active schedule entry: its slug, parameters and due times."""

    slug: str
    index: int
    summary: str
    parameters: Mapping[str, Any]
    _next: Callable[[datetime], datetime | None] = field(repr=False, compare=False)
    _latest: Callable[[datetime], datetime | None] = field(repr=False, compare=False)

    def next_after(self, moment: datetime) -> datetime | None:
        """The first due time strictly after `moment`, or None when there is none."""
        return self._next(moment)

    def latest_until(self, moment: datetime) -> datetime | None:
        """The last due time at or before `moment`, or None."""
        return self._latest(moment)

    def between(self, after: datetime, until: datetime, limit: int) -> list[datetime]:
        """The due times in (after, until], oldest first: the last `limit` of them (walked
        backwards from `until`, so a long outage costs `limit` steps, not one per miss)."""
        out: list[datetime] = []
        moment = self.latest_until(until)
        while moment is not None and moment > after and len(out) < limit:
            out.append(moment)
            moment = self.latest_until(moment - _TICK)
        return out[::-1]


def run_name(deployment: str, slug: str, due: datetime) -> str:
    """`<deployment>-<slug>-<epoch seconds>`: the same due time always gives the same name,
    so a restart or an overlap finds the run already there. Cut with a hash when too long."""
    name = f"{deployment}-{slug}-{int(due.timestamp())}"
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    tail = f"-{slug}-{int(due.timestamp())}"
    return f"{deployment[: _MAX_NAME - len(tail) - 9].rstrip('-.')}-{digest}{tail}"


def parse(spec: Mapping[str, Any], created: datetime
          ) -> tuple[list[Timetable], InvalidSchedule | None]:
    """The active timetables of a Deployment spec, or the first problem found."""
    tables: list[Timetable] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(spec.get("schedules") or ()):
        where = f"spec.schedules[{index}]"
        slug = str(entry.get("slug") or index)
        if slug in seen:
            return [], InvalidSchedule(f"{where}.slug", f"{slug!r} is also the slug of "
                                       f"spec.schedules[{seen[slug]}]",
                                       "give each schedule its own slug")
        seen[slug] = index
        try:
            table = _timetable(entry, index, slug, created)
        except _Refused as refused:
            return [], InvalidSchedule(f"{where}.{refused.field}", refused.problem,
                                       refused.fix)
        if entry.get("active", True):
            tables.append(table)
    return tables, None


class _Refused(Exception):
    def __init__(self, field_name: str, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.field, self.problem, self.fix = field_name, problem, fix


def _zone(entry: Mapping[str, Any]) -> ZoneInfo:
    name = entry.get("timezone") or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _Refused("timezone", f"{name!r} is not an IANA time zone",
                       "use a name such as UTC, Europe/Berlin or America/New_York") from None


def _timetable(entry: Mapping[str, Any], index: int, slug: str,
               created: datetime) -> Timetable:
    parameters = entry.get("parameters") or {}
    if entry.get("interval") is not None:
        nxt, latest, summary = _interval(entry)
    elif entry.get("cron") is not None:
        nxt, latest, summary = _cron(entry)
    elif entry.get("rrule") is not None:
        nxt, latest, summary = _rrule_table(entry, created)
    else:
        raise _Refused("cron", "the entry has none of cron, interval or rrule",
                       "set exactly one of them")
    return Timetable(slug, index, summary, parameters, nxt, latest)


def _interval(entry: Mapping[str, Any]) -> tuple[Any, Any, str]:
    seconds = int(entry["interval"])
    if seconds < 1:
        raise _Refused("interval", f"{seconds} is not a positive number of seconds",
                       "set interval to 1 or more")
    anchor = entry.get("anchorDate") or DEFAULT_ANCHOR
    if isinstance(anchor, str):
        try:
            anchor = datetime.fromisoformat(anchor.replace("Z", "+00:00"))
        except ValueError:
            raise _Refused("anchorDate", f"{anchor!r} is not an RFC 3339 time",
                           "write it like 2024-01-01T00:00:00Z") from None
    if anchor.tzinfo is None:
        anchor = anchor.replace(tzinfo=_UTC)
    step = timedelta(seconds=seconds)

    def nxt(moment: datetime) -> datetime:
        return anchor + step * ((moment - anchor) // step + 1)

    def latest(moment: datetime) -> datetime:
        return anchor + step * ((moment - anchor) // step)

    return nxt, latest, f"every {seconds}s"


def _aware(local: datetime, zone: ZoneInfo) -> datetime:
    return local.replace(tzinfo=zone, fold=0).astimezone(_UTC)


def _local(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


def _cron(entry: Mapping[str, Any]) -> tuple[Any, Any, str]:
    expression = str(entry["cron"]).strip()
    zone = _zone(entry)
    fields = expression.split()
    if not (expression.startswith("@") or len(fields) == 5) or not croniter.is_valid(
            expression):
        raise _Refused("cron", f"{expression!r} is not a cron expression",
                       "write five fields (minute hour day-of-month month day-of-week), "
                       "e.g. '*/15 * * * *', or a macro such as @hourly or @daily")

    def nxt(moment: datetime) -> datetime | None:
        walker = croniter(expression, _local(moment, zone))
        for _ in range(8):  # a skipped or repeated local time can land at or before `moment`
            due = _aware(walker.get_next(datetime), zone)
            if due > moment:
                return due
        return None

    def latest(moment: datetime) -> datetime | None:
        walker = croniter(expression, _local(moment, zone) + timedelta(microseconds=1))
        for _ in range(8):
            due = _aware(walker.get_prev(datetime), zone)
            if due <= moment:
                return due
        return None

    suffix = "" if zone.key == "UTC" else f" {zone.key}"
    return nxt, latest, f"{expression}{suffix}"


def _rrule_table(entry: Mapping[str, Any], created: datetime) -> tuple[Any, Any, str]:
    text = str(entry["rrule"]).strip()
    zone = _zone(entry)
    # Without a DTSTART, rules count from the Deployment's creation day (midnight, local),
    # never from "now", so every reading of the same rule gives the same times.
    start = _local(created, zone).replace(hour=0, minute=0, second=0, microsecond=0)
    try:
        rule = _rrule.rrulestr(text, dtstart=start, ignoretz=True, forceset=True)
    except (ValueError, TypeError, KeyError) as exc:
        raise _Refused("rrule", f"{text!r} is not an RFC 5545 recurrence rule ({exc})",
                       "write it like 'FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0'") from None

    def nxt(moment: datetime) -> datetime | None:
        local = rule.after(_local(moment, zone), inc=False)
        while local is not None and _aware(local, zone) <= moment:
            local = rule.after(local, inc=False)
        return None if local is None else _aware(local, zone)

    def latest(moment: datetime) -> datetime | None:
        local = rule.before(_local(moment, zone), inc=True)
        while local is not None and _aware(local, zone) > moment:
            local = rule.before(local, inc=False)
        return None if local is None else _aware(local, zone)

    suffix = "" if zone.key == "UTC" else f" {zone.key}"
    return nxt, latest, f"RRULE {text}{suffix}"
