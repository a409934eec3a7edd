"""Unit tests of the in-pod Kubernetes reporter (flowpod.engine._kubereporter, flowpod.engine._kubeapi)
against a small fake API server behind httpx.MockTransport."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from flowpod import contract, reporting, states
from flowpod.engine import _kubeapi, _kubereporter
from flowpod.errors import Abort

from engine.kube_fakes import NAME, NS, T0, FakeApi, Sleeps
from engine.kube_fakes import run as _run
from engine.kube_fakes import wire as _wire



def _reporter(api: FakeApi, *, log_tail=None, retry=_kubeapi.RetryPolicy(),
              sleeps: Sleeps | None = None) -> _kubereporter.KubeReporter:
    connection = _kubeapi.Connection.explicit("https://api.test", token="sekret")
    client = _kubeapi.FlowRunClient(connection, NS, NAME, retry=retry,
                                     transport=httpx.MockTransport(api.handler),
                                     asleep=sleeps or Sleeps())
    return _kubereporter.KubeReporter(client, clock=lambda: T0, log_tail=log_tail)


def test_running_is_a_merge_patch_with_precondition_and_token() -> None:
    api = FakeApi(status={"state": _wire(states.Pending(timestamp=T0))})
    reporter = _reporter(api)
    accepted = _run(lambda: reporter.propose_state(states.Running("go")))
    assert accepted.name == "Running"
    get, patch = api.requests
    assert get.headers["authorization"] == "Bearer sekret"
    assert patch.headers["content-type"] == "application/merge-patch+json"
    body = json.loads(patch.content)
    assert body["metadata"] == {"resourceVersion": "1"}
    status = api.obj["status"]
    assert status["state"]["type"] == "RUNNING" and status["startTime"] == contract.format_time(T0)
    assert [h["name"] for h in status["stateHistory"]] == ["Pending", "Running"]
    # The reply is reused: the next write needs no GET.
    _run(lambda: reporter.propose_state(states.Completed()))
    assert [r.method for r in api.requests] == ["GET", "PATCH", "PATCH"]
    assert api.obj["status"]["conditions"][0]["status"] == "True"


@pytest.mark.parametrize("terminal", [states.Completed, states.Failed, states.Crashed,
                                      states.Cancelled])
def test_a_terminal_run_refuses_everything(terminal) -> None:
    api = FakeApi(status={"state": _wire(terminal("done", timestamp=T0))})
    with pytest.raises(Abort, match="already ended") as caught:
        _run(lambda: _reporter(api).propose_state(states.Running()))
    assert caught.value.state.type is terminal().type
    assert api.patches() == []


def test_cancelling_only_becomes_cancelled() -> None:
    api = FakeApi(status={"state": _wire(states.Cancelling("user asked", timestamp=T0))})
    reporter = _reporter(api)
    with pytest.raises(Abort, match="being cancelled"):
        _run(lambda: reporter.propose_state(states.Running()))
    # The engine's own Cancelling is a no-op on top of the operator's.
    assert _run(lambda: reporter.propose_state(states.Cancelling())).message == "user asked"
    assert api.patches() == []
    _run(lambda: reporter.propose_state(states.Cancelled("stopped")))
    assert api.obj["status"]["state"]["type"] == "CANCELLED"


def test_spec_cancel_refuses_running_before_the_operator_reacts() -> None:
    api = FakeApi(status={"state": _wire(states.Pending(timestamp=T0))},
                  spec={"deploymentName": "d", "cancel": True})
    with pytest.raises(Abort, match="spec.cancel"):
        _run(lambda: _reporter(api).propose_state(states.Running()))
    assert api.patches() == []


def test_conflict_is_re_read_and_re_decided_into_an_abort() -> None:
    api = FakeApi(status={"state": _wire(states.Running(timestamp=T0))})
    api.before_patch = lambda fake: fake.write_status(
        state=_wire(states.Cancelling("cancel!", timestamp=T0)))
    with pytest.raises(Abort, match="being cancelled") as caught:
        _run(lambda: _reporter(api).propose_state(states.Completed()))
    assert caught.value.state.is_cancelling()
    assert api.obj["status"]["state"]["type"] == "CANCELLING"


def test_conflict_with_an_unrelated_write_is_retried_and_keeps_both() -> None:
    api = FakeApi(status={"state": _wire(states.Pending(timestamp=T0))})
    api.before_patch = lambda fake: fake.write_status(podName="run-1-1-abcde")
    _run(lambda: _reporter(api).propose_state(states.Running()))
    assert [r.method for r in api.requests] == ["GET", "PATCH", "GET", "PATCH"]
    assert api.obj["status"]["podName"] == "run-1-1-abcde"
    assert api.obj["status"]["state"]["type"] == "RUNNING"


def test_api_server_refusal_becomes_abort() -> None:
    api = FakeApi(status={"state": _wire(states.Pending(timestamp=T0))})
    # The server's table says no even though ours said yes (e.g. an older engine image).
    api.failures.append(lambda r: None)  # the GET passes through
    api.failures.append(lambda r: httpx.Response(422, json={"message": "CEL said no"}))
    with pytest.raises(Abort, match="CEL said no"):
        _run(lambda: _reporter(api).propose_state(states.Running()))


def _connect_error(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def test_a_short_outage_loses_nothing() -> None:
    api = FakeApi(status={"state": _wire(states.Pending(timestamp=T0))})
    api.failures += [_connect_error, _connect_error,
                     lambda r: httpx.Response(503, json={"message": "etcd leader changed"})]
    sleeps = Sleeps()
    _run(lambda: _reporter(api, sleeps=sleeps).propose_state(states.Running()))
    assert api.obj["status"]["state"]["type"] == "RUNNING"
    assert sleeps.delays == [0.2, 0.4, 0.8]


def test_a_lost_reply_is_recognised_as_already_written() -> None:
    api = FakeApi(status={"state": _wire(states.Pending(timestamp=T0))})

    def apply_then_drop(request: httpx.Request) -> httpx.Response:
        api.handler(request)  # the write lands...
        raise httpx.ReadTimeout("reply lost", request=request)  # ...but we never hear of it

    api.failures += [lambda r: None, apply_then_drop]
    running = states.Running(timestamp=T0)
    accepted = _run(lambda: _reporter(api).propose_state(running))
    assert accepted.type is states.StateType.RUNNING
    assert [h["name"] for h in api.obj["status"]["stateHistory"]] == ["Pending", "Running"]


def test_a_long_outage_ends_with_a_clear_error() -> None:
    api = FakeApi()
    api.failures += [_connect_error] * 100
    policy = _kubeapi.RetryPolicy(initial=1, maximum=2, deadline=5)
    sleeps = Sleeps()
    with pytest.raises(_kubeapi.KubeApiError, match="kept failing.*ConnectError"):
        _run(lambda: _reporter(api, retry=policy, sleeps=sleeps).read_state())
    assert sleeps.delays == [1, 2, 2]


def test_forbidden_names_the_missing_permissions() -> None:
    api = FakeApi()
    api.failures.append(lambda r: httpx.Response(403, json={"message": "forbidden"}))
    with pytest.raises(_kubeapi.KubeApiError, match="patch on flowruns/status"):
        _run(lambda: _reporter(api).read_state())


def test_a_policy_refusal_is_told_as_is_without_the_permissions_hint() -> None:
    api = FakeApi()
    why = ("flowruns.flowpod.io \"b\" is forbidden: ValidatingAdmissionPolicy "
           "'flowpod-flow-run-identity' with binding 'flowpod-flow-run-identity' denied "
           "request: pod a-1-x2z4q may write only its own FlowRun, not FlowRun b")
    api.failures.append(lambda r: httpx.Response(403, json={"message": why}))
    with pytest.raises(_kubeapi.KubeApiError) as refused:
        _run(lambda: _reporter(api).read_state())
    assert refused.value.status == 403
    assert str(refused.value.message).endswith(f": refused ({why})")
    assert "patch on flowruns/status" not in str(refused.value)


def test_a_deleted_flowrun_aborts_the_run() -> None:
    api = FakeApi()
    api.failures.append(lambda r: httpx.Response(404, json={"message": "not found"}))
    with pytest.raises(Abort, match="FlowRun is gone"):
        _run(lambda: _reporter(api).propose_state(states.Running()))


def test_small_results_are_inline_large_ones_not_kept_saying_why() -> None:
    api = FakeApi(status={"state": _wire(states.Running(timestamp=T0))})
    _run(lambda: _reporter(api).propose_state(states.Completed(data={"answer": [4, 2]})))
    assert api.obj["status"]["result"] == {"value": {"answer": [4, 2]}}

    api = FakeApi(status={"state": _wire(states.Running(timestamp=T0))})
    big = "x" * (contract.MAX_INLINE_RESULT_BYTES * 300)
    _run(lambda: _reporter(api).propose_state(states.Completed(data=big)))
    assert api.obj["status"]["result"] == {"notKept": (
        "The result was not kept: it is 1.2 MiB as JSON, over the 4 KiB that fit in the "
        "FlowRun's status, and the run has no result storage (spec.resultStorage). Set "
        "spec.resultStorage on the Deployment (or FlowRun) to keep it there.")}


def test_non_json_results_are_not_kept_saying_why() -> None:
    api = FakeApi(status={"state": _wire(states.Running(timestamp=T0))})
    _run(lambda: _reporter(api).propose_state(states.Completed(data={1, 2})))
    assert api.obj["status"]["result"] == {"notKept": (
        "The result was not kept: a set is not JSON, and the run has no result storage "
        "(spec.resultStorage). Set spec.resultStorage on the Deployment (or FlowRun) to keep "
        "it there, or return JSON data (dicts, lists, strings, numbers).")}
    assert _kubereporter.result_field(None) is None
    assert _kubereporter.result_field(float("nan"))["notKept"].startswith(
        "The result was not kept: it holds NaN or Infinity, which JSON cannot represent")


def test_nulls_inside_a_result_survive() -> None:
    api = FakeApi(status={"state": _wire(states.Running(timestamp=T0))})
    _run(lambda: _reporter(api).propose_state(states.Completed(data={"a": None, "b": [None]})))
    assert api.obj["status"]["result"] == {"value": {"a": None, "b": [None]}}
    assert api.obj["status"]["state"]["type"] == "COMPLETED"


def _summary(counts: dict[str, int], failed: int = 0) -> reporting.TaskRunSummary:
    items = tuple(reporting.FailedTaskRun(f"t-{i}", f"t-{i}", states.Failed(f"boom {i}"))
                  for i in range(failed))
    return reporting.TaskRunSummary(total=sum(counts.values()), counts=counts, failed=items,
                                    failed_total=failed)


def test_task_runs_are_one_patch_per_flush_and_stale_counts_are_deleted() -> None:
    api = FakeApi(status={"state": _wire(states.Running(timestamp=T0))})
    reporter = _reporter(api)
    _run(lambda: reporter.flush_task_runs(_summary({"RUNNING": 3})))
    _run(lambda: reporter.flush_task_runs(_summary({"COMPLETED": 2, "FAILED": 1}, failed=1)))
    assert len(api.patches()) == 2
    assert all("state" not in p["status"] for p in api.patches())
    task_runs = api.obj["status"]["taskRuns"]
    assert task_runs["counts"] == {"COMPLETED": 2, "FAILED": 1}
    assert task_runs["failed"] == [{"name": "t-0", "state": "Failed", "message": "boom 0"}]
    assert task_runs["failedTotal"] == 1 and task_runs["total"] == 3


def test_task_run_lists_are_bounded() -> None:
    wire = _kubereporter.task_runs_patch(_summary({"FAILED": 80}, failed=80))
    assert len(wire["failed"]) == contract.MAX_LISTED_RUNS and wire["failedTotal"] == 80


def test_task_runs_flush_survives_a_conflict() -> None:
    api = FakeApi(status={"state": _wire(states.Running(timestamp=T0))})
    api.before_patch = lambda fake: fake.write_status(podName="p")
    _run(lambda: _reporter(api).flush_task_runs(_summary({"COMPLETED": 1})))
    assert api.obj["status"]["taskRuns"]["counts"] == {"COMPLETED": 1}


@pytest.mark.parametrize("spec, state, expected", [
    ({"cancel": True}, states.Running, True),
    ({}, states.Cancelling, True),
    ({"cancel": False}, states.Running, False),
])
def test_is_cancellation_requested(spec, state, expected) -> None:
    api = FakeApi(status={"state": _wire(state(timestamp=T0))},
                  spec={"deploymentName": "d", **spec})
    assert _run(_reporter(api).is_cancellation_requested) is expected


def test_cancellation_check_falls_back_to_the_last_copy_when_the_api_is_down() -> None:
    api = FakeApi(status={"state": _wire(states.Cancelling(timestamp=T0))})
    reporter = _reporter(api, retry=_kubeapi.RetryPolicy(initial=1, maximum=1, deadline=2))
    _run(reporter.read_state)
    api.failures += [_connect_error] * 10
    assert _run(reporter.is_cancellation_requested) is True


def test_read_state_sees_a_resume() -> None:
    api = FakeApi(status={"state": _wire(states.Paused(timestamp=T0))})
    reporter = _reporter(api)
    assert _run(reporter.read_state).is_paused()
    api.write_status(state=_wire(states.Running("resumed", timestamp=T0 + timedelta(1))))
    assert _run(reporter.read_state).message == "resumed"


def test_pending_fields_go_with_the_next_state_write() -> None:
    api = FakeApi(status={"state": _wire(states.Pending(timestamp=T0))})
    reporter = _reporter(api)
    reporter.set_status_fields(flowRunName="crimson-owl")
    _run(lambda: reporter.propose_state(states.Running()))
    _run(lambda: reporter.propose_state(states.Completed()))
    assert api.obj["status"]["flowRunName"] == "crimson-owl"
    assert "flowRunName" not in api.patches()[1]["status"]


def test_in_cluster_connection_reads_the_service_account(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("first\n")
    (tmp_path / "ca.crt").write_text(_self_signed_ca())
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    connection = _kubeapi.Connection.in_cluster(env, sa_dir=tmp_path)
    assert connection.base_url == "https://10.96.0.1:443"
    assert connection.token() == "first"
    (tmp_path / "token").write_text("rotated")  # the kubelet refreshes projected tokens
    assert connection.token() == "rotated"
    v6 = _kubeapi.Connection.in_cluster({**env, "KUBERNETES_SERVICE_HOST": "fd00::1"},
                                         sa_dir=tmp_path)
    assert v6.base_url == "https://[fd00::1]:443"


def test_in_cluster_connection_explains_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="KUBERNETES_SERVICE_HOST"):
        _kubeapi.Connection.in_cluster({}, sa_dir=tmp_path)
    env = {"KUBERNETES_SERVICE_HOST": "h", "KUBERNETES_SERVICE_PORT": "1"}
    with pytest.raises(RuntimeError, match="automountServiceAccountToken"):
        _kubeapi.Connection.in_cluster(env, sa_dir=tmp_path)


def _self_signed_ca() -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(T0).not_valid_after(T0 + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_exported_names_exist() -> None:
    for module in (_kubeapi, _kubereporter):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
