"""The operator's Prometheus metrics (prometheus-client; exposition is the library's).

Role: one `Metrics` per operator, holding its own CollectorRegistry. Counts and timings are
fed where things happen: state transitions and crashes from the FlowRun bodies the intake
remembers (`observe`: the states appended since the last body seen, as Events are
announced, so a restart never counts a transition twice), submission latency from the
actuator (first sight of a run -> its Job created), reconcile durations and errors from the
loop, API errors from KubeApi. Gauges (runs by namespace, Deployment and state type; runs
waiting for a concurrency slot) are read from the Index at scrape time, so they are right
after a restart without any bookkeeping that could drift. Labels never carry run names:
their number is bounded by namespaces x Deployments x state types.
Callers: flowpod_operator.running (builds it, serves it through .serving), intake, loop,
actuator, kubeapi.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from typing import Any, Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from flowpod import contract, states

from flowpod_operator._decisions import diagnosing
from flowpod_operator._decisions.views import FlowRunView, Key
from flowpod_operator._runtime.eventing import new_transitions

__all__ = ["Metrics", "crash_category", "CRASH_CATEGORIES"]

CRASH_CATEGORIES = ("OOMKilled", "Evicted", "ImagePull", "DeadlineExceeded", "PodDeleted",
                    "NodeLost", "ExitCode", "Other")
_FINAL = frozenset(t.value for t in states.TERMINAL_TYPES)
_AWAITING_SLOT = "AwaitingConcurrencySlot"
# Submission is milliseconds when all is well; seconds mean a backlog.
_SUBMISSION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
_RECONCILE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
# How many runs' first-sight times to keep while their Job is not created (a bound).
_MAX_PENDING_SIGHTS = 100_000


def crash_category(reason: str | None) -> str:
    """A Crashed run's status.reason folded into a bounded set of causes."""
    reason = reason or ""
    if reason in ("OOMKilled", "DeadlineExceeded", "PodDeleted", "Evicted"):
        return reason
    if reason in diagnosing.NODE_LOST_REASONS:
        return "NodeLost"
    if "Image" in reason:
        return "ImagePull"
    if reason.startswith("Eviction") or reason.startswith("Preemption"):
        return "Evicted"
    if reason in ("Error", "ExitCode") or reason.startswith("Exit"):
        return "ExitCode"
    return "Other"


class _IndexGauges(Collector):
    """Gauges read from the Index at scrape time."""

    def __init__(self, runs: Callable[[], list[tuple[Key, Mapping[str, Any]]]]) -> None:
        self.runs = runs

    def collect(self) -> Iterator[GaugeMetricFamily]:
        by_state: Tally[tuple[str, str, str]] = Tally()
        waiting: Tally[tuple[str, str]] = Tally()
        for (namespace, _), body in self.runs():
            run = FlowRunView(body)
            deployment = run.deployment_name or ""
            by_state[(namespace, deployment, run.state_type or "NONE")] += 1
            if ((body.get("status") or {}).get("state") or {}).get("name") == _AWAITING_SLOT:
                waiting[(namespace, deployment)] += 1
        runs = GaugeMetricFamily("flowpod_flowruns", "FlowRuns the operator knows, by "
                                 "namespace, Deployment ('' for ad-hoc runs) and state type",
                                 labels=["namespace", "deployment", "state"])
        for labels, count in sorted(by_state.items()):
            runs.add_metric(list(labels), count)
        yield runs
        slots = GaugeMetricFamily("flowpod_flowruns_awaiting_slot", "FlowRuns held back by a "
                                  "concurrency limit (AwaitingConcurrencySlot)",
                                  labels=["namespace", "deployment"])
        for labels, count in sorted(waiting.items()):
            slots.add_metric(list(labels), count)
        yield slots


class Metrics:
    """The operator's metrics and the hooks that feed them."""

    def __init__(self, runs: Callable[[], list[tuple[Key, Mapping[str, Any]]]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = CollectorRegistry()
        self.clock = clock
        reg = self.registry
        self.transitions = Counter("flowpod_flowrun_transitions", "State transitions seen, "
                                   "by from and to state type", ["from_state", "to_state"],
                                   registry=reg)
        self.crashes = Counter("flowpod_flowrun_crashes", "Runs that ended Crashed, by cause",
                               ["reason"], registry=reg)
        self.submission = Histogram("flowpod_submission_latency_seconds", "First sight of a "
                                    "FlowRun by the operator to its Job created",
                                    buckets=_SUBMISSION_BUCKETS, registry=reg)
        self.duration = Histogram("flowpod_flowrun_duration_seconds", "Run duration (start "
                                  "to end), by Deployment and final state type",
                                  ["deployment", "state"], buckets=_DURATION_BUCKETS,
                                  registry=reg)
        self.reconcile = Histogram("flowpod_reconcile_duration_seconds", "One look at one "
                                   "FlowRun: decide and act", buckets=_RECONCILE_BUCKETS,
                                   registry=reg)
        self.reconcile_errors = Counter("flowpod_reconcile_errors", "Looks at a FlowRun that "
                                        "failed and were retried", registry=reg)
        self.api_errors = Counter("flowpod_api_errors", "API requests that failed, by verb",
                                  ["verb"], registry=reg)
        reg.register(_IndexGauges(runs))
        self._sighted: dict[Key, float] = {}

    # --- fed by the intake ------------------------------------------------------------------
    def observe(self, before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> None:
        """A newer body of a run: count the states appended since `before`. A first sight
        counts nothing (as after a restart); a run not submitted yet (no state) starts its
        submission clock, whether a watch event or the start-up listing showed it: a run
        created while the operator started (or was down) waits for its Job too."""
        run = FlowRunView(after)
        if before is None:
            if not run.state_type:
                self._sight(run.key)
            return
        previous = (FlowRunView(before).state_type or "NONE")
        entries = new_transitions(_last_marker(before), after)
        for entry in entries:
            current = entry.get("type") or "NONE"
            self.transitions.labels(previous, current).inc()
            previous = current
        if entries and run.state_type in _FINAL:
            self._ended(run, after)

    def forget(self, key: Key) -> None:
        self._sighted.pop(key, None)

    def _sight(self, key: Key) -> None:
        if len(self._sighted) < _MAX_PENDING_SIGHTS:
            self._sighted[key] = self.clock()

    def _ended(self, run: FlowRunView, body: Mapping[str, Any]) -> None:
        status = body.get("status") or {}
        self._sighted.pop(run.key, None)
        if run.state_type == states.StateType.CRASHED.value:
            self.crashes.labels(crash_category(status.get("reason"))).inc()
        start = contract.parse_time_or_none(status.get("startTime"))
        end = contract.parse_time_or_none(status.get("endTime"))
        if start is not None and end is not None and end >= start:
            self.duration.labels(run.deployment_name or "", run.state_type).observe(
                (end - start).total_seconds())

    # --- fed by the actuator and the loop ---------------------------------------------------
    def job_created(self, key: Key) -> None:
        sighted = self._sighted.pop(key, None)
        if sighted is not None:
            self.submission.observe(max(0.0, self.clock() - sighted))


def _last_marker(body: Mapping[str, Any]) -> tuple[str, str, str] | None:
    status = body.get("status") or {}
    history = status.get("stateHistory") or ([status["state"]] if status.get("state") else [])
    if not history:
        return None
    last = history[-1]
    return last.get("type", ""), last.get("name", ""), last.get("timestamp", "")
