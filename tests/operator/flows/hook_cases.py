"""Flows with on_crashed / on_cancellation hooks whose pods are killed, for
tests/operator/test_operator_hooks*.py. Every hook appends one line to
/hooks-out/<flow run name>.log, a hostPath volume the tests read, so they can count how
often it ran and in which process."""

from __future__ import annotations

import ctypes
import os
import signal
import time
from pathlib import Path

from flowpod import flow

OUT = Path("/hooks-out")


def _appends(tag: str):
    def hook(flow, flow_run, state) -> None:
        with open(OUT / f"{flow_run.name}.log", "a") as out:
            out.write(f"{tag} {state.name}\n")

    hook.__name__ = f"append_{tag}"
    return hook


def breaks(flow, flow_run, state) -> None:
    raise RuntimeError("the hook broke on purpose")


@flow(on_crashed=[_appends("crashed")])
def hog_memory(megabytes: int = 400) -> int:
    chunks = []
    for _ in range(megabytes):
        chunks.append(bytearray(1024 * 1024))  # touched pages: real resident memory
    time.sleep(5)
    return len(chunks)


@flow(on_crashed=[_appends("crashed")])
def sigkill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(30)


@flow(on_crashed=[breaks, _appends("after-the-broken-one")])
def sigkill_self_with_a_broken_hook() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(30)


@flow(on_cancellation=[_appends("cancelled")], on_crashed=[_appends("crashed")])
def sleeps(seconds: float = 60.0) -> None:
    time.sleep(seconds)


@flow(on_cancellation=[_appends("cancelled")])
def ignores_sigterm(seconds: float = 60.0) -> None:
    # Set the process-wide disposition in C, so not even the engine sees SIGTERM: the pod is
    # killed when its grace period ends, with no code of the flow left to run its hooks.
    libc = ctypes.CDLL(None)
    libc.signal.restype = ctypes.c_void_p
    libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.signal(signal.SIGTERM, ctypes.c_void_p(1))  # SIG_IGN
    time.sleep(seconds)
