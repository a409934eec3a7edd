"""The pod status a kubelet reports, computed from the node's view of a pod's containers.

Used by podworkers, which keeps a PodRuntime up to date and sends `pod_status(...)` as a merge
patch. Pure data and functions: no I/O, and time comes in as an argument.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

__all__ = ["ContainerRuntime", "PodRuntime", "Terminated", "phase", "pod_status", "rfc3339"]

DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"


def rfc3339(when: datetime.datetime) -> str:
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    reason: str
    started_at: datetime.datetime
    finished_at: datetime.datetime
    container_id: str
    signal: int | None = None
    message: str | None = None

    def to_api(self) -> dict:
        out = {"exitCode": self.exit_code, "reason": self.reason,
               "startedAt": rfc3339(self.started_at), "finishedAt": rfc3339(self.finished_at),
               "containerID": self.container_id}
        if self.signal:
            out["signal"] = self.signal
        if self.message:
            out["message"] = self.message
        return out


@dataclass
class ContainerRuntime:
    """One container as the node sees it: exactly one of waiting / running / terminated."""

    name: str
    image: str
    image_id: str = ""
    waiting_reason: str | None = "ContainerCreating"
    waiting_message: str | None = None
    running_since: datetime.datetime | None = None
    container_id: str | None = None
    terminated: Terminated | None = None
    last_terminated: Terminated | None = None
    restart_count: int = 0

    def set_waiting(self, reason: str, message: str | None = None) -> None:
        self.waiting_reason, self.waiting_message = reason, message
        self.running_since = None

    def set_running(self, container_id: str, since: datetime.datetime) -> None:
        self.container_id, self.running_since = container_id, since
        self.waiting_reason = self.waiting_message = None
        self.terminated = None

    def set_terminated(self, result: Terminated) -> None:
        self.terminated, self.running_since = result, None
        self.waiting_reason = self.waiting_message = None

    def prepare_restart(self, reason: str, message: str) -> None:
        """The last run ended and another will follow after a back-off."""
        self.last_terminated, self.terminated = self.terminated, None
        self.restart_count += 1
        self.set_waiting(reason, message)

    @property
    def has_run(self) -> bool:
        return self.terminated is not None or self.last_terminated is not None

    @property
    def last_exit(self) -> Terminated | None:
        return self.terminated or self.last_terminated

    def to_api(self) -> dict:
        if self.running_since is not None:
            state = {"running": {"startedAt": rfc3339(self.running_since)}}
        elif self.terminated is not None:
            state = {"terminated": self.terminated.to_api()}
        else:
            waiting = {"reason": self.waiting_reason or "ContainerCreating"}
            if self.waiting_message:
                waiting["message"] = self.waiting_message
            state = {"waiting": waiting}
        out = {"name": self.name, "image": self.image, "imageID": self.image_id,
               "state": state, "lastState": {}, "ready": self.running_since is not None,
               "restartCount": self.restart_count,
               "started": self.running_since is not None}
        if self.last_terminated is not None:
            out["lastState"] = {"terminated": self.last_terminated.to_api()}
        cid = self.container_id if self.terminated is None else self.terminated.container_id
        if cid and (self.running_since is not None or self.terminated is not None):
            out["containerID"] = cid
        return out


@dataclass
class PodRuntime:
    init_containers: list[ContainerRuntime]
    containers: list[ContainerRuntime]
    start_time: datetime.datetime | None = None
    sandbox_ready: bool = False
    initialized: bool = False
    # Set when the node decides the pod's fate itself (deadline, deletion, init failure).
    final_phase: str | None = None
    reason: str | None = None
    message: str | None = None
    transitions: dict[str, tuple[str, str]] = field(default_factory=dict)


def phase(rt: PodRuntime, restart_policy: str) -> str:
    """The kubelet's phase rule for the containers' current states."""
    if rt.final_phase is not None:
        return rt.final_phase
    if not rt.initialized:
        return "Pending"
    waiting = running = stopped = succeeded = 0
    for c in rt.containers:
        if c.running_since is not None:
            running += 1
        elif c.has_run:
            stopped += 1
            succeeded += c.last_exit.exit_code == 0
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if restart_policy == "Always":
        return "Running"
    if stopped == succeeded:
        return "Succeeded"
    return "Running" if restart_policy == "OnFailure" else "Failed"


def _condition(rt: PodRuntime, kind: str, status: bool, now: datetime.datetime,
               reason: str | None = None, message: str | None = None) -> dict:
    value = "True" if status else "False"
    previous = rt.transitions.get(kind)
    if previous is None or previous[0] != value:
        rt.transitions[kind] = (value, rfc3339(now))
    out = {"type": kind, "status": value, "lastProbeTime": None,
           "lastTransitionTime": rt.transitions[kind][1]}
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


def _conditions(rt: PodRuntime, pod_phase: str, now: datetime.datetime) -> list[dict]:
    terminal = pod_phase in ("Succeeded", "Failed")
    unready = [c.name for c in rt.containers if c.running_since is None]
    ready = not unready and not terminal
    why = "PodCompleted" if terminal else ("ContainersNotReady" if unready else None)
    what = None if terminal or not unready else f"containers with unready status: {unready}"
    pending_init = [c.name for c in rt.init_containers if not c.terminated]
    init_why = None if rt.initialized else "ContainersNotInitialized"
    init_what = f"containers with incomplete status: {pending_init}" if init_why else None
    return [
        _condition(rt, "PodReadyToStartContainers", rt.sandbox_ready, now),
        _condition(rt, "Initialized", rt.initialized, now, init_why, init_what),
        _condition(rt, "Ready", ready, now, why, what),
        _condition(rt, "ContainersReady", ready, now, why, what),
    ]


def pod_status(rt: PodRuntime, *, restart_policy: str, existing_conditions: list[dict],
               node_ip: str, now: datetime.datetime) -> dict:
    """The status sub-object to write; conditions owned by others (PodScheduled,
    DisruptionTarget, ...) are carried over from ``existing_conditions``."""
    pod_phase = phase(rt, restart_policy)
    ours = _conditions(rt, pod_phase, now)
    owned = {c["type"] for c in ours}
    kept = [c for c in existing_conditions if c.get("type") not in owned]
    status = {
        "phase": pod_phase,
        "conditions": ours + kept,
        "hostIP": node_ip, "hostIPs": [{"ip": node_ip}],
        "containerStatuses": [c.to_api() for c in rt.containers],
    }
    if rt.init_containers:
        status["initContainerStatuses"] = [c.to_api() for c in rt.init_containers]
    if rt.sandbox_ready:
        status["podIP"], status["podIPs"] = node_ip, [{"ip": node_ip}]
    if rt.start_time is not None:
        status["startTime"] = rfc3339(rt.start_time)
    if rt.reason:
        status["reason"] = rt.reason
    if rt.message:
        status["message"] = rt.message
    return status
