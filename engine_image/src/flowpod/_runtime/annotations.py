"""Argument wrappers that change how the task engine treats one argument.

Role: `unmapped` (pass the value whole to every mapped run) and `allow_failure`
(let a task start even if this upstream failed). Users import them from `flowpod`;
flowpod._runtime.task_calls (map expansion) and flowpod._runtime.futures (input
resolution) unwrap them.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["unmapped", "allow_failure"]

T = TypeVar("T")


class _Wrapper(Generic[T]):
    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def unwrap(self) -> T:
        return self.value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"


class unmapped(_Wrapper[T]):
    """Give this argument, unchanged, to every run of `.map()` instead of iterating it."""

    __slots__ = ()


class allow_failure(_Wrapper[T]):
    """Start the downstream task even if this upstream failed; it receives the exception."""

    __slots__ = ()
