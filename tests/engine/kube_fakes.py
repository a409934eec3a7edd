"""The fake API server of the in-pod engine's tests: one FlowRun, behind httpx.MockTransport.

Role: shared by the hermetic tests of the in-pod reporter and main
(tests/engine/test_kubereporter*.py, tests/engine/test_in_pod.py). It is the one fake
API server of the test suite (tests/fakeapi.py) holding a single FlowRun `NS/NAME`: it
honours resourceVersion preconditions (409), applies merge patches as RFC 7386 says, and
refuses state transitions the way the CRD's CEL rule does (422), so tests can fail for real.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Callable

import anyio
import json_merge_patch

from fakeapi import FakeApi as _SharedFakeApi
from flowpod import contract, flowruns, states

__all__ = ["FakeApi", "Sleeps", "NS", "NAME", "PATH", "T0", "run", "wire"]

NS, NAME = "team", "run-1"
PATH = contract.flowrun_path(NS, NAME)


class FakeApi(_SharedFakeApi):
    """The shared fake API server, holding one FlowRun (`obj`)."""

    def __init__(self, status: dict | None = None, spec: dict | None = None) -> None:
        super().__init__()
        obj: dict[str, Any] = {
            "apiVersion": contract.API_VERSION, "kind": contract.KIND_FLOW_RUN,
            "metadata": {"name": NAME, "namespace": NS, "generation": 1, "resourceVersion": "1"},
            "spec": spec or {"entrypoint": "f.py:f", "image": "flowpod/engine:dev"},
        }
        if status is not None:
            obj["status"] = status
        self.add(obj)

    @property
    def obj(self) -> dict[str, Any]:
        return self.objects[(contract.FLOWRUNS, NS, NAME)]

    def bump(self) -> None:
        self._bump(self.obj)

    def write_status(self, **fields: Any) -> None:
        """A concurrent writer (the operator) changing the status."""
        self.update(contract.FLOWRUNS, NS, NAME,
                    status=json_merge_patch.merge(dict(self.obj.get("status") or {}), fields))

    def patches(self) -> list[dict]:
        return [json.loads(r.content) for r in self.requests if r.method == "PATCH"]


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


# The reporter tests' fixed clock.
T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def run(fn: Callable[[], Any]) -> Any:
    """Run one coroutine function to completion, as the engine's thread would."""
    return anyio.run(fn)


def wire(state: states.State) -> dict:
    """A state as the FlowRun's status carries it."""
    return flowruns.state_to_wire(state)
