"""Hooks after a hard kill survive operator restarts without running twice: the operator
is SIGKILLed the moment it has claimed a killed run's on_crashed hooks (the hook Job
created or not yet), restarted, and restarted once more after the hooks ran; there is
exactly one hook Job and the hook ran exactly once."""

from __future__ import annotations

from hooks_harness import CASES, hook_jobs, hook_volume, lines, wait_hooks_done

from flowpod import contract


def _hooks(flowrun: dict) -> dict:
    return (flowrun.get("status") or {}).get("hooks") or {}


def test_restarted_operators_start_no_second_hook_job(operators, api, flow_namespace,
                                                      tmp_path):
    ns = flow_namespace
    tmp_path.chmod(0o777)
    api.create_deployment(ns, "killed", entrypoint=f"{CASES}:sigkill_self",
                          podTemplate=hook_volume(tmp_path))
    api.create_deployment(ns, "probe", entrypoint=f"{CASES}:sleeps",
                          parameters={"seconds": 0})
    first = operators()
    api.create_flowrun(ns, "killed", deploymentName="killed")
    api.wait_flowrun(ns, "killed", lambda f: _hooks(f).get("runner") == "Job",
                     what="the hook Job's claim", explain=first.log_tail)
    first.kill()

    second = operators()
    flowrun = wait_hooks_done(api, ns, "killed", second.log_tail)
    assert _hooks(flowrun)["outcome"] == "Succeeded", flowrun["status"]
    (job,) = hook_jobs(api, ns, "killed")
    second.stop()

    third = operators()
    # Once this later run has completed, the third operator has seen and decided on
    # everything in the namespace, "killed" included.
    api.create_flowrun(ns, "probe", deploymentName="probe")
    probe = api.wait_final(ns, "probe", explain=third.log_tail)
    assert probe["status"]["state"]["type"] == "COMPLETED"
    assert [j["metadata"]["uid"] for j in hook_jobs(api, ns, "killed")] == \
        [job["metadata"]["uid"]]
    assert lines(tmp_path, "killed") == ["crashed Crashed"]
    assert api.flowrun(ns, "killed")["status"]["hooks"] == flowrun["status"]["hooks"]
    assert contract.HOOKS_RUNNER_JOB == flowrun["status"]["hooks"]["runner"]
