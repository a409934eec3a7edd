"""The pure scheduling decisions: due times (cron with DST, interval, rrule), missed-run and
concurrency policies, deterministic run names, the status and Ready condition."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from flowpod import contract
from flowpod_operator._decisions import scheduling, timetables

UTC = timezone.utc
CREATED = datetime(2024, 1, 1, tzinfo=UTC)


def _deployment(*schedules, status=None, **spec):
    return {"metadata": {"name": "etl", "namespace": "ns", "uid": "u1", "generation": 2,
                         "creationTimestamp": contract.format_time(CREATED, fraction=False)},
            "spec": {"entrypoint": "f.py:f", "image": "i", "schedules": list(schedules),
                     **spec},
            "status": status or {}}


def _through(moment):
    return {"scheduledThrough": contract.format_time(moment, fraction=False)}


def _run(name, state="RUNNING", due=None):
    return {"metadata": {"name": name, "namespace": "ns",
                         "labels": {contract.LABEL_SCHEDULE: "0"}},
            "spec": {"deploymentName": "etl",
                     "scheduledTime": contract.format_time(due or CREATED, fraction=False)},
            "status": {"state": {"type": state, "name": state.title()}}}


def _local_times(schedule, start, hours, zone):
    tables, problem = timetables.parse({"schedules": [schedule]}, CREATED)
    assert problem is None
    times = tables[0].between(start, start + timedelta(hours=hours), 100)
    return [t.astimezone(zone).strftime("%H:%M%z") for t in times]


def test_cron_hourly_on_spring_forward_day_in_berlin_runs_once_per_real_hour():
    from zoneinfo import ZoneInfo
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2024, 3, 30, 23, 30, tzinfo=UTC)  # 00:30 CET on 2024-03-31
    got = _local_times({"cron": "0 * * * *", "timezone": "Europe/Berlin"}, start, 4, berlin)
    # 02:00 does not exist that night: it falls on 03:00 CEST, which runs once.
    assert got == ["01:00+0100", "03:00+0200", "04:00+0200", "05:00+0200"]


def test_cron_daily_in_the_skipped_hour_runs_that_much_later():
    from zoneinfo import ZoneInfo
    ny = ZoneInfo("America/New_York")
    start = datetime(2024, 3, 10, 0, 0, tzinfo=UTC)  # the evening before, in New York
    got = _local_times({"cron": "30 2 * * *", "timezone": "America/New_York"}, start, 24, ny)
    assert got == ["03:30-0400"]


def test_cron_on_fall_back_day_runs_a_repeated_wall_time_once():
    from zoneinfo import ZoneInfo
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2024, 10, 26, 23, 30, tzinfo=UTC)  # 01:30 CEST on 2024-10-27
    hourly = _local_times({"cron": "0 * * * *", "timezone": "Europe/Berlin"}, start, 4, berlin)
    assert hourly == ["02:00+0200", "03:00+0100", "04:00+0100"]
    daily = _local_times({"cron": "30 2 * * *", "timezone": "Europe/Berlin"}, start, 4, berlin)
    assert daily == ["02:30+0200"]


def test_interval_counts_from_its_anchor_and_macros_and_rrules_read():
    tables, problem = timetables.parse({"schedules": [
        {"interval": 60, "anchorDate": "2024-01-01T00:00:30Z"}, {"cron": "@daily"},
        {"rrule": "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9", "timezone": "Europe/Berlin"}]}, CREATED)
    assert problem is None
    moment = datetime(2024, 1, 3, 12, 0, 10, tzinfo=UTC)  # a Wednesday
    assert tables[0].next_after(moment) == datetime(2024, 1, 3, 12, 0, 30, tzinfo=UTC)
    assert tables[1].next_after(moment) == datetime(2024, 1, 4, tzinfo=UTC)
    assert tables[2].next_after(moment) == datetime(2024, 1, 8, 8, tzinfo=UTC)


@pytest.mark.parametrize("schedule, field, fix", [
    ({"cron": "61 * * * *"}, "spec.schedules[1].cron", "five fields"),
    ({"cron": "* * * *"}, "spec.schedules[1].cron", "five fields"),
    ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "spec.schedules[1].timezone",
     "IANA"),
    ({"rrule": "FREQ=SOMETIMES"}, "spec.schedules[1].rrule", "FREQ=WEEKLY"),
    ({"interval": 5, "slug": "0"}, "spec.schedules[1].slug", "its own slug"),
])
def test_an_unreadable_schedule_names_its_field_and_the_fix(schedule, field, fix):
    deployment = _deployment({"interval": 5}, schedule)
    result = scheduling.plan(deployment, [], CREATED + timedelta(hours=1))
    ready = result.status["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "False",
                                                                  "InvalidSchedule")
    assert ready["message"].startswith(f"{field}: ") and fix in ready["message"]
    assert ready["observedGeneration"] == 2
    stalled = result.status["conditions"][1]
    assert (stalled["type"], stalled["status"], stalled["reason"]) == ("Stalled", "True",
                                                                      "InvalidSchedule")
    assert stalled["message"] == ready["message"] and stalled["observedGeneration"] == 2
    assert result.starts == [] and result.wake_at is None


def test_on_time_run_is_named_from_its_due_time_with_labels_owner_and_parameters():
    due = datetime(2024, 1, 1, 1, tzinfo=UTC)
    deployment = _deployment({"interval": 60, "slug": "min", "parameters": {"x": 1}},
                             status=_through(due - timedelta(minutes=1)))
    result = scheduling.plan(deployment, [], due + timedelta(seconds=0.3))
    (start,) = result.starts
    assert start.name == f"etl-min-{int(due.timestamp())}"
    meta, spec = start.manifest["metadata"], start.manifest["spec"]
    assert meta["labels"] == {contract.LABEL_DEPLOYMENT: "etl", contract.LABEL_SCHEDULE: "min"}
    assert meta["ownerReferences"][0]["uid"] == "u1"
    assert spec == {"deploymentName": "etl", "scheduledTime": "2024-01-01T01:00:00Z",
                    "parameters": {"x": 1}}
    assert result.wake_at == due + timedelta(minutes=1)
    assert result.status["scheduledThrough"] == "2024-01-01T01:00:00Z"
    assert result.status["nextScheduleTimes"] == [
        "2024-01-01T01:01:00Z", "2024-01-01T01:02:00Z", "2024-01-01T01:03:00Z"]
    assert result.status["activeRuns"] == 1
    assert result.status["lastRunName"] == start.name
    # Looking again (a restart, a second event) finds the run there and starts nothing.
    again = scheduling.plan(deployment, [_run(start.name, "SCHEDULED", due)],
                            due + timedelta(seconds=1))
    assert again.starts == []


def test_a_very_long_deployment_name_still_gives_a_valid_stable_run_name():
    due = datetime(2024, 1, 1, tzinfo=UTC)
    name = timetables.run_name("d" * 250, "slug", due)
    assert len(name) <= 253 and name.endswith(f"-slug-{int(due.timestamp())}")
    assert name == timetables.run_name("d" * 250, "slug", due)


@pytest.mark.parametrize("policy, expected_hours", [
    ("RunLatest", [5]), ("RunAll", [1, 2, 3, 4, 5]), ("Skip", [])])
def test_missed_runs_after_downtime_follow_the_missed_run_policy(policy, expected_hours):
    deployment = _deployment({"cron": "0 * * * *"}, missedRunPolicy=policy,
                             status=_through(CREATED))
    now = CREATED + timedelta(hours=5, minutes=30)
    result = scheduling.plan(deployment, [], now)
    assert [s.due.hour for s in result.starts] == expected_hours
    assert result.status["scheduledThrough"] == "2024-01-01T05:00:00Z"


def test_run_latest_starts_every_due_time_looked_at_on_time():
    # A scheduler a few seconds behind (a burst of due Deployments) has missed nothing.
    deployment = _deployment({"interval": 3}, status=_through(CREATED))
    result = scheduling.plan(deployment, [], CREATED + timedelta(seconds=7))
    assert [s.due for s in result.starts] == [CREATED + timedelta(seconds=3),
                                             CREATED + timedelta(seconds=6)]


def test_the_newest_run_of_a_schedule_is_progress_even_before_scheduled_through_is():
    # scheduledThrough is written lazily; the runs created since say what was handled,
    # even when older ones were cleaned up meanwhile.
    deployment = _deployment({"cron": "0 * * * *"}, missedRunPolicy="RunAll",
                             status=_through(CREATED))
    third = CREATED + timedelta(hours=3)
    result = scheduling.plan(deployment, [_run("etl-0-3", "COMPLETED", third)],
                             CREATED + timedelta(hours=5, minutes=30))
    assert [s.due.hour for s in result.starts] == [4, 5]
    assert result.status["scheduledThrough"] == "2024-01-01T05:00:00Z"


def test_run_all_is_bounded():
    deployment = _deployment({"interval": 1}, missedRunPolicy="RunAll",
                             status=_through(CREATED))
    result = scheduling.plan(deployment, [], CREATED + timedelta(days=1))
    assert len(result.starts) == scheduling.MAX_RUN_ALL


def test_starting_deadline_drops_due_times_too_far_past():
    deployment = _deployment({"cron": "0 * * * *"}, startingDeadlineSeconds=600,
                             missedRunPolicy="RunAll", status=_through(CREATED))
    assert scheduling.plan(deployment, [], CREATED + timedelta(hours=2, minutes=11)).starts == []
    late = scheduling.plan(deployment, [], CREATED + timedelta(hours=2, minutes=9))
    assert [s.due.hour for s in late.starts] == [2]


def test_a_new_deployment_never_starts_times_before_its_creation():
    result = scheduling.plan(_deployment({"cron": "0 * * * *"}), [],
                             CREATED + timedelta(minutes=30))
    assert result.starts == [] and result.wake_at == CREATED + timedelta(hours=1)


@pytest.mark.parametrize("policy, started, cancelled", [
    ("Allow", True, []), ("Forbid", False, []), ("Replace", True, ["etl-0-1"])])
def test_concurrency_policy_against_a_live_scheduled_run(policy, started, cancelled):
    due = CREATED + timedelta(hours=1)
    deployment = _deployment({"cron": "0 * * * *"}, concurrencyPolicy=policy,
                             status=_through(CREATED))
    result = scheduling.plan(deployment, [_run("etl-0-1")], due + timedelta(seconds=1))
    assert bool(result.starts) is started
    assert result.cancels == cancelled
    # Forbid skips this due time for good: it is handled, not retried later.
    assert result.status["scheduledThrough"] == "2024-01-01T01:00:00Z"


def test_a_final_run_does_not_block_forbid():
    deployment = _deployment({"interval": 60}, concurrencyPolicy="Forbid",
                             status=_through(CREATED))
    result = scheduling.plan(deployment, [_run("etl-0-1", "COMPLETED")],
                             CREATED + timedelta(minutes=1, seconds=1))
    assert len(result.starts) == 1


def test_paused_or_inactive_schedules_start_nothing_and_do_not_backfill():
    paused = _deployment({"interval": 60}, paused=True, status=_through(CREATED))
    result = scheduling.plan(paused, [], CREATED + timedelta(hours=1, seconds=1))
    assert result.starts == [] and result.wake_at is None
    assert result.status["schedule"] == "Paused"
    assert result.status["conditions"][0]["reason"] == "Paused"
    # Unpausing later does not start the hour missed while paused.
    unpaused = _deployment({"interval": 60}, status=result.status)
    assert scheduling.plan(unpaused, [], CREATED + timedelta(hours=1, seconds=2)).starts == []
    inactive = _deployment({"interval": 60, "active": False}, status=_through(CREATED))
    assert scheduling.plan(inactive, [], CREATED + timedelta(hours=1)).starts == []


def test_ready_keeps_its_transition_time_while_unchanged():
    deployment = _deployment({"interval": 60})
    first = scheduling.plan(deployment, [], CREATED + timedelta(seconds=1))
    later = scheduling.plan(_deployment({"interval": 60}, status=first.status), [],
                            CREATED + timedelta(hours=1))
    assert later.status["conditions"][0]["lastTransitionTime"] == \
        first.status["conditions"][0]["lastTransitionTime"]
    assert first.status["conditions"][0]["reason"] == "Scheduling"
    assert [c["type"] for c in first.status["conditions"]] == ["Ready"]  # not Stalled
