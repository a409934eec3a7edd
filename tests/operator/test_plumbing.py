"""The operator's plumbing without a cluster: the index (stale events, tombstones), the work
queue (dedup, one worker per key, delays), JSON logs, the CLI, the typed views, and each
module's and layer's docstring and exports."""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import logging
import pkgutil

import pytest

from flowpod import contract
from flowpod_operator import running
from flowpod_operator._decisions import observations as _observations
from flowpod_operator._decisions.views import FlowRunView, Meta
from flowpod_operator._runtime import indexing as _indexing
from flowpod_operator._runtime import kubeapi as _acting
from flowpod_operator._runtime import logs as _logging
from flowpod_operator._runtime import queueing as _queueing


def test_index_keeps_the_newer_body(k8s):
    index = _indexing.Index()
    run = k8s.flowrun()
    newer = {**run, "metadata": {**run["metadata"], "resourceVersion": "200"}}
    assert index.put_flowrun(newer)
    assert not index.put_flowrun(run)  # a late watch event of an older version
    assert index.flowrun(("ns", "run"))["metadata"]["resourceVersion"] == "200"


def test_index_maps_children_to_their_run_and_keeps_tombstones(k8s):
    index = _indexing.Index()
    run = k8s.flowrun("a" * 70)
    index.put_flowrun(run)
    job, pod = k8s.job(run), k8s.pod(run)
    key = ("ns", "a" * 70)
    assert index.put_job(job) == key and index.put_pod(pod) == key
    assert index.remove_pod(pod) == key
    observation = index.observe(key)
    assert observation.pods == () and [p["metadata"]["name"] for p in
                                       observation.gone_pods] == [pod["metadata"]["name"]]
    assert index.put_pod(pod) == key  # a late MODIFIED after DELETED does not resurrect it
    assert index.observe(key).pods == ()
    assert index.put_pod({"metadata": {"name": "x", "namespace": "ns"}}) is None


def test_index_groups_runs_by_deployment_through_updates_and_removal(k8s):
    index = _indexing.Index()
    scheduled = {"labels": {contract.LABEL_SCHEDULE: "0"}}
    for name, deployment in (("a-1", "a"), ("a-2", "a"), ("b-1", "b"), ("adhoc", None)):
        run = k8s.flowrun(name, deployment=deployment)
        run["metadata"].update(scheduled)
        index.put_flowrun(run)
    index.put_flowrun(k8s.flowrun("a-manual", deployment="a", attempt=1))
    newer = k8s.flowrun("a-1", deployment="a")
    newer["metadata"].update(scheduled, resourceVersion="200")
    assert index.put_flowrun(newer)  # an update neither duplicates nor drops it
    assert [Meta(r).name for r in index.scheduled_runs("ns", "a")] == ["a-1", "a-2"]
    assert index.waiting_for_deployment("ns", "a") == [("ns", "a-1"), ("ns", "a-2")]
    assert [key for key, _ in index.runs_of("ns", "a")] == [
        ("ns", "a-1"), ("ns", "a-2"), ("ns", "a-manual")]
    index.remove_flowrun(("ns", "a-1"))
    assert [Meta(r).name for r in index.scheduled_runs("ns", "a")] == ["a-2"]
    assert [Meta(r).name for r in index.scheduled_runs("ns", "b")] == ["b-1"]
    assert index.scheduled_runs("other", "a") == []


def test_index_resync_set(k8s):
    index = _indexing.Index()
    index.put_flowrun(k8s.flowrun("done", state=k8s.state("COMPLETED")))
    index.put_flowrun(k8s.flowrun("going", state=k8s.state("RUNNING")))
    assert index.unfinished_keys() == [("ns", "going")]


def test_queue_deduplicates_and_never_hands_a_key_to_two_workers():
    async def scenario() -> list[str]:
        queue = _queueing.WorkQueue()
        queue.add("a")
        queue.add("a")
        queue.add("b")
        first = await queue.get()
        queue.add("a")  # marked again while a worker holds it
        second = await queue.get()
        assert {first, second} == {"a", "b"} and queue.stats()["queued"] == 0
        queue.done("a")  # ...so it comes back once released
        queue.done("b")
        again = await asyncio.wait_for(queue.get(), 1)
        return [first, second, again]

    assert asyncio.run(scenario()) == ["a", "b", "a"]


def test_queue_keeps_the_earliest_delay():
    async def scenario() -> float:
        queue = _queueing.WorkQueue()
        loop = asyncio.get_running_loop()
        started = loop.time()
        queue.add_after("k", 5.0)
        queue.add_after("k", 0.05)
        queue.add_after("k", 3.0)
        await asyncio.wait_for(queue.get(), 2)
        return loop.time() - started

    assert asyncio.run(scenario()) < 1.0


def test_logs_are_json_lines_with_extra_fields():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_logging.JsonFormatter())
    logger = logging.getLogger("flowpod_operator.test")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("wrote %s", "status", extra={"flowRun": "r", "fields": ("a",)})
    finally:
        logger.removeHandler(handler)
    entry = json.loads(stream.getvalue())
    assert entry["message"] == "wrote status" and entry["level"] == "WARNING"
    assert entry["flowRun"] == "r" and entry["fields"] == ["a"]


def test_cli_options(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("{}")
    args = running.build_parser().parse_args(["-n", "a", "--namespace", "b", "-n", "a",
                                              "--kubeconfig", str(kubeconfig),
                                              "--health-port", "0"])
    options = running.options_from_args(args)
    assert options.namespaces == ("a", "b") and options.kubeconfig == str(kubeconfig)
    assert options.health_port == 0 and options.service_account == contract.DEFAULT_SERVICE_ACCOUNT
    assert running.options_from_args(running.build_parser().parse_args([])).namespaces == ()


def test_bad_cli_input_names_the_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        running.main(["--workers", "0"])
    assert exit_info.value.code == 2
    assert "--workers must be at least 1" in capsys.readouterr().err


def test_missing_kubeconfig_is_a_clear_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        running.main(["--kubeconfig", str(tmp_path / "nope")])
    assert exit_info.value.code == 2
    assert f"--kubeconfig {tmp_path / 'nope'}: no such file" in capsys.readouterr().err


MINE = ["_decisions.actions", "_decisions.deciding", "_decisions.diagnosing",
        "_decisions.manifests", "_decisions.observations", "_decisions.validating",
        "_decisions.views", "_runtime.actuator", "_runtime.connecting", "_runtime.eventing",
        "_runtime.indexing", "_runtime.intake", "_runtime.kubeapi", "_runtime.logs",
        "_runtime.permissions",
        "_runtime.loop", "_runtime.queueing", "_runtime.watching", "_runtime.wiring",
        "crds.resources", "crds.crdgen", "crds._cel", "running"]


@pytest.mark.parametrize("name", [f"flowpod_operator.{name}" for name in MINE] + [
    "flowpod_kube.connecting", "flowpod_kube.errors", "flowpod_kube.calls", "flowpod_kube.apply"])
def test_each_module_exports_what_it_defines(name):
    module = importlib.import_module(name)
    assert "Role" in (module.__doc__ or ""), f"{name} has no role in its docstring"
    for exported in module.__all__:
        assert hasattr(module, exported), f"{name}.__all__ names missing {exported}"
    parent, _, leaf = module.__name__.rpartition(".")
    assert leaf in {m.name for m in pkgutil.iter_modules(importlib.import_module(parent).__path__)}


@pytest.mark.parametrize("layer", ["flowpod_operator._decisions", "flowpod_operator._runtime",
                                   "flowpod_kube", "flowpod_operator.crds",
                                   "flowpod_operator.cli"])
def test_each_layer_says_what_it_is(layer):
    package = importlib.import_module(layer)
    assert "Role" in (package.__doc__ or ""), f"{layer} has no role in its docstring"


def test_missing_crds_are_named_with_the_fix():
    api = _acting.KubeApi(None)  # type: ignore[arg-type]
    calls = []

    async def served(method, path, **_):
        calls.append(path)
        return _acting.Reply(200, {"resources": [{"name": "flowruns"}]})

    api._call = served  # type: ignore[method-assign]
    with pytest.raises(_acting.MissingCrdError) as error:
        asyncio.run(api.check_crds(wait=0.05, interval=0.01))
    assert "['deployments']" in str(error.value) and "kubectl apply -f crds/" in str(error.value)
    assert calls[0] == "/apis/flowpod.io/v1alpha1" and len(calls) >= 2


@pytest.mark.parametrize("text, expected", [
    ("2026-03-01T12:00:00Z", "2026-03-01T12:00:00+00:00"),
    ("2026-03-01T12:00:00.123456789Z", "2026-03-01T12:00:00.123456+00:00"),
    ("2026-03-01T14:00:00+02:00", "2026-03-01T14:00:00+02:00"),
    ("not a time", None), (None, None),
])
def test_times_from_the_api(text, expected):
    parsed = _observations.parse_time(text)
    assert (parsed.isoformat() if parsed else None) == expected


def test_views_read_what_the_api_may_omit(k8s):
    run = k8s.flowrun(state=k8s.state("RUNNING"), attempt=2)
    view = FlowRunView(run)
    assert view.key == ("ns", "run") and view.deployment_name == "hello"
    assert (view.state_type, view.attempt, view.meta.generation) == ("RUNNING", 2, 1)
    bare = FlowRunView({"metadata": {"name": "x", "namespace": "ns"}})
    assert (bare.state_type, bare.attempt, bare.status, dict(bare.spec)) == (None, 0, None, {})
    assert Meta({}).labels == {} and Meta({"metadata": None}).name is None
    newer = {"metadata": {"uid": "u", "resourceVersion": "12"}}
    assert Meta({"metadata": {"uid": "u", "resourceVersion": "9"}}).is_older_than(newer)
    assert not Meta({"metadata": {"uid": "v", "resourceVersion": "9"}}).is_older_than(newer)


def test_a_reply_about_a_deleted_run_does_not_bring_it_back(k8s):
    """A write's reply (or a re-read) in flight when the DELETED event came must not put the
    run back into the Index, where it would hold its concurrency slot until a resync."""
    from flowpod_operator._runtime.eventing import EventRecorder
    from flowpod_operator._runtime.intake import Intake

    index = _indexing.Index()
    intake = Intake(index, _queueing.WorkQueue(), EventRecorder(lambda e: None,
                                                                  clock=lambda: k8s.now))
    run = k8s.flowrun()
    run["metadata"]["uid"] = "uid-1"
    intake.on_flowrun("ADDED", run)
    late = {**run, "metadata": {**run["metadata"], "resourceVersion": "999"}}
    intake.on_flowrun("DELETED", run)
    intake.remember(late)
    assert index.flowrun(("ns", "run")) is None
    # A new FlowRun of the same name (another uid) is a run of its own.
    again = {**run, "metadata": {**run["metadata"], "uid": "uid-2"}}
    intake.on_flowrun("ADDED", again)
    assert index.flowrun(("ns", "run"))["metadata"]["uid"] == "uid-2"
