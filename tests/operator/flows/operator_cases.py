"""Flows that die in every way a pod can, for the operator's integration tests
(tests/operator/test_operator_*.py). Each runs inside a pod on the test node."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

from flowpod import flow


@flow
def hello(n: int = 2) -> dict:
    return {"n": n, "double": 2 * n}


@flow
def raises() -> None:
    raise ValueError("raised on purpose by the test flow")


@flow
def exit3() -> None:
    sys.exit(3)


@flow
def hard_exit3() -> None:
    os._exit(3)  # no engine code runs: nothing reports a final state


@flow
def sigkill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(30)


@flow
def sigterm_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)


@flow
def hog_memory(megabytes: int = 400) -> int:
    chunks = []
    for _ in range(megabytes):
        chunks.append(bytearray(1024 * 1024))  # touched pages: real resident memory
    time.sleep(5)
    return len(chunks)


@flow
def sleeps(seconds: float = 60.0) -> float:
    time.sleep(seconds)
    return seconds


@flow
def ignores_sigterm(seconds: float = 60.0) -> None:
    # Set the process-wide disposition in C, so it holds whichever thread runs the flow.
    libc = ctypes.CDLL(None)
    libc.signal.restype = ctypes.c_void_p
    libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.signal(signal.SIGTERM, ctypes.c_void_p(1))  # SIG_IGN
    time.sleep(seconds)
