"""The pure slot accounting (flowpod_operator._decisions.limits) and its use in `decide`."""

from __future__ import annotations

from flowpod import states
from flowpod_operator._decisions import actions as act
from flowpod_operator._decisions import deciding, limits
from flowpod_operator._decisions import observations as obs

NOW_KEY = ("ns", "r")


def _run(k8s, name, *, created, state=None, attempt=None, dep="etl", **kw):
    body = k8s.flowrun(name, deployment=dep, state=state, attempt=attempt, **kw)
    body["metadata"]["creationTimestamp"] = k8s.ts(created)
    return body


def _peers(k8s, bodies, starting=()):
    out = [limits.peer_of(b, k8s.now, starting=b["metadata"]["name"] in starting)
           for b in bodies]
    return [p for p in out if p is not None]


ETL = {("ns", "etl"): limits.Limit(2)}


def test_holders_are_started_unfinished_runs_only(k8s):
    s = k8s.state
    bodies = [_run(k8s, "p", created=-9, state=s("PENDING"), attempt=1),
              _run(k8s, "u", created=-8, state=s("RUNNING"), attempt=1),
              _run(k8s, "c", created=-7, state=s("CANCELLING"), attempt=1),
              _run(k8s, "z", created=-6, state=s("PAUSED"), attempt=1),
              _run(k8s, "a", created=-5, state=s("SCHEDULED", "AwaitingRetry"), attempt=1),
              _run(k8s, "done", created=-4, state=s("COMPLETED"), attempt=1),
              _run(k8s, "x", created=-3, state=s("CRASHED"), attempt=1),
              _run(k8s, "later", created=-2, scheduled=60),
              _run(k8s, "gone", created=-2, cancel=True),
              _run(k8s, "w", created=-1)]
    peers = {p.key[1]: p.holding for p in _peers(k8s, bodies)}
    assert peers == {"p": True, "u": True, "c": True, "z": True, "a": True, "w": False}


def test_oldest_waiting_runs_that_fit_are_admitted(k8s):
    bodies = [_run(k8s, "running", created=-10, state=k8s.state("RUNNING"), attempt=1),
              _run(k8s, "young", created=-1), _run(k8s, "old", created=-5),
              _run(k8s, "b", created=-3), _run(k8s, "a", created=-3)]
    assert limits.admitted(_peers(k8s, bodies), ETL) == [("ns", "old")]
    # Same second: by name.
    bodies[0] = _run(k8s, "running", created=-10, state=k8s.state("COMPLETED"), attempt=1)
    assert limits.admitted(_peers(k8s, bodies), ETL) == [("ns", "old"), ("ns", "a")]


def test_a_run_whose_start_is_in_flight_holds_its_slot(k8s):
    bodies = [_run(k8s, "young", created=-1), _run(k8s, "old", created=-5),
              _run(k8s, "older", created=-6)]
    peers = _peers(k8s, bodies, starting={"young", "older"})
    assert limits.admitted(peers, ETL) == []
    v = limits.verdict(("ns", "old"), peers, ETL)
    assert v == limits.Verdict(False, "waiting for a concurrency slot: 2/2 runs of "
                                      "deployment etl active")


def test_cancel_new_names_the_limit(k8s):
    bodies = [_run(k8s, "r1", created=-9, state=k8s.state("RUNNING"), attempt=1),
              _run(k8s, "r2", created=-1)]
    table = {("ns", "etl"): limits.Limit(1, limits.CANCEL_NEW)}
    v = limits.verdict(("ns", "r2"), _peers(k8s, bodies), table)
    assert v.cancel and not v.start
    assert "1/1 runs of deployment etl active" in v.message
    assert "concurrencyLimit 1" in v.message and "CancelNew" in v.message


def test_operator_wide_limit_skips_runs_their_deployment_holds_back(k8s):
    bodies = [_run(k8s, "e1", created=-9, state=k8s.state("RUNNING"), attempt=1),
              _run(k8s, "e2", created=-8),  # held back by etl's own limit of 1
              _run(k8s, "o1", created=-7, dep="other"),
              _run(k8s, "o2", created=-6, dep="other"),
              _run(k8s, "adhoc", created=-5, dep=None)]
    table = {("ns", "etl"): limits.Limit(1)}
    peers = _peers(k8s, bodies)
    assert limits.admitted(peers, table, max_runs=3) == [("ns", "o1"), ("ns", "o2")]
    v = limits.verdict(("ns", "adhoc"), peers, table, max_runs=3)
    assert v == limits.Verdict(False, "waiting for a concurrency slot: 3/3 runs active "
                                      "operator-wide (--max-concurrent-runs)")
    assert limits.verdict(("ns", "o2"), peers, table, max_runs=3).start


def test_limit_of_reads_the_deployment(k8s):
    assert limits.limit_of(None) is None
    assert limits.limit_of({"spec": {"concurrencyLimit": 2}}) == limits.Limit(2, "Enqueue")
    assert limits.limit_of({"spec": {"concurrencyLimit": 1, "collisionStrategy": "CancelNew"}}
                           ) == limits.Limit(1, "CancelNew")


def _decide(k8s, flowrun, slot):
    o = obs.Observation(flowrun=flowrun, deployment=k8s.deployment(), slot=slot,
                        deployment_fresh=True)
    return deciding.decide(o, k8s.now)


def test_decide_waits_once_with_the_message(k8s):
    msg = "waiting for a concurrency slot: 2/2 runs of deployment etl active"
    actions = _decide(k8s, k8s.flowrun("r"), limits.Verdict(False, msg))
    writes = [a for a in actions if isinstance(a, act.WriteStatus)]
    assert [(s.name, s.message) for s in writes[0].states] == [
        (states.names.AWAITING_CONCURRENCY_SLOT, msg)]
    assert not any(isinstance(a, act.CreateJob) for a in actions)
    waiting = k8s.flowrun("r", state=k8s.state("SCHEDULED", "AwaitingConcurrencySlot", msg))
    assert [a for a in _decide(k8s, waiting, limits.Verdict(False, msg))
            if not isinstance(a, act.LabelFlowRun)] == []


def test_decide_starts_a_waiting_run_once_admitted(k8s):
    waiting = k8s.flowrun("r", state=k8s.state("SCHEDULED", "AwaitingConcurrencySlot", "w"))
    actions = _decide(k8s, waiting, limits.START)
    assert any(isinstance(a, act.CreateJob) for a in actions)


def test_decide_cancels_under_cancel_new(k8s):
    actions = _decide(k8s, k8s.flowrun("r"), limits.Verdict(False, "Cancelled: x", True))
    (write,) = [a for a in actions if isinstance(a, act.WriteStatus)]
    assert [(s.type, s.message) for s in write.states] == [
        (states.StateType.CANCELLED, "Cancelled: x")]


def test_a_start_in_flight_holds_its_slot_at_runtime(k8s):
    """A younger run whose Job is being created holds the slot against an older run that
    became due meanwhile: ranking alone would let both start."""
    from flowpod_operator._runtime.indexing import Index
    from flowpod_operator._runtime.slots import Slots

    index = Index()
    deployment = k8s.deployment("etl")
    deployment["spec"]["concurrencyLimit"] = 1
    index.put_deployment(deployment)
    young = _run(k8s, "young", created=-1)
    old = _run(k8s, "old", created=-5)
    for body in (young, old):
        index.put_flowrun(body)
    slots = Slots(index, clock=lambda: k8s.now)
    assert slots.verdict(old).start and not slots.verdict(young).start
    slots.starting.add(("ns", "young"))
    assert not slots.verdict(old).start
    assert slots.wake("ns", "etl") == []
    slots.starting.clear()
    assert slots.wake("ns", "etl") == [("ns", "old")]
    # With an operator-wide limit instead, the same holds across Deployments.
    index.put_deployment(k8s.deployment("etl"))
    wide = Slots(index, clock=lambda: k8s.now, max_runs=1)
    wide.starting.add(("ns", "young"))
    assert not wide.verdict(old).start
