"""`flowpod deploy`'s schedule flags: --cron, --interval, --rrule, --timezone, --paused,
--missed-run-policy, --concurrency-policy, read into Deployment spec fields.

Role: turns the flags into `spec.schedules` entries and the policy fields, and checks them
locally with the operator's own reading of schedules (flowpod_operator._decisions.timetables),
so a cron expression, time zone or RRULE the operator would refuse is refused here, naming
the flag and the fix, before any cluster is used. Entries come in flag order: every --cron,
then every --interval, then every --rrule; their slugs default to the entry's index, as in a
hand-written spec. Caller: flowpod_operator.cli._deploying.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, get_args

from flowpod import deployments
from flowpod_operator._decisions import timetables
from flowpod_operator.cli import _errors
from flowpod_operator.crds.schedules import ConcurrencyPolicy, MissedRunPolicy

__all__ = ["ScheduleFlags", "spec_fields", "MISSED_RUN_POLICIES", "CONCURRENCY_POLICIES"]

MISSED_RUN_POLICIES: tuple[str, ...] = get_args(MissedRunPolicy)
CONCURRENCY_POLICIES: tuple[str, ...] = get_args(ConcurrencyPolicy)
# rrules without DTSTART count from the Deployment's creation day; any day reads them alike.
_ANY_DAY = datetime(2020, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class ScheduleFlags:
    """The schedule flags of `flowpod deploy`, as given (None or empty: not given)."""

    cron: tuple[str, ...] = ()
    interval: tuple[int, ...] = ()
    rrule: tuple[str, ...] = ()
    timezone: str | None = None
    paused: bool = False
    missed_run_policy: str | None = None
    concurrency_policy: str | None = None

    @property
    def schedules(self) -> list[tuple[str, str, Any]]:
        """(flag, spec key, value) per entry, in spec order."""
        return ([("--cron", "cron", c) for c in self.cron]
                + [("--interval", "interval", i) for i in self.interval]
                + [("--rrule", "rrule", r) for r in self.rrule])


def spec_fields(flags: ScheduleFlags) -> dict[str, Any]:
    """The Deployment spec fields the flags ask for (only those given, so a server-side
    apply owns nothing else), or a CliError naming the flag and the fix."""
    _check_choice("--missed-run-policy", flags.missed_run_policy, MISSED_RUN_POLICIES)
    _check_choice("--concurrency-policy", flags.concurrency_policy, CONCURRENCY_POLICIES)
    entries = flags.schedules
    if not entries:
        _check_nothing_to_schedule(flags)
        return {}
    if flags.timezone is not None and not (flags.cron or flags.rrule):
        raise _errors.CliError("--timezone applies to --cron and --rrule only; an --interval "
                               "counts seconds, whatever the time zone",
                               "drop --timezone, or give the schedule as --cron or --rrule")
    schedules = deployments.schedule_entries(flags.cron, flags.interval, flags.rrule,
                                             flags.timezone)
    _, invalid = timetables.parse({"schedules": schedules}, _ANY_DAY)
    if invalid is not None:
        raise _refusal(invalid, entries)
    return deployments.schedule_fields(schedules, paused=flags.paused,
                                       missed_run_policy=flags.missed_run_policy,
                                       concurrency_policy=flags.concurrency_policy)


def _check_choice(flag: str, value: str | None, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise _errors.CliError(f"{flag} {value!r} is not a policy",
                               f"use one of {', '.join(allowed)}")


def _check_nothing_to_schedule(flags: ScheduleFlags) -> None:
    given = [flag for flag, value in (("--timezone", flags.timezone),
                                      ("--paused", flags.paused or None),
                                      ("--missed-run-policy", flags.missed_run_policy),
                                      ("--concurrency-policy", flags.concurrency_policy))
             if value is not None]
    if given:
        raise _errors.CliError(f"{given[0]} has no effect without a schedule",
                               "add --cron, --interval or --rrule, or drop "
                               f"{' and '.join(given)}")


def _refusal(invalid: timetables.InvalidSchedule,
             entries: list[tuple[str, str, Any]]) -> _errors.CliError:
    """The operator's complaint about spec.schedules[i].FIELD, told as the flag that made it
    (its problem quotes the value)."""
    if invalid.field.endswith(".timezone"):
        flag = "--timezone"
    else:
        flag = entries[int(invalid.field.split("[", 1)[1].split("]", 1)[0])][0]
    return _errors.CliError(f"{flag}: {invalid.problem}", invalid.fix)
