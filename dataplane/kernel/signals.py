"""Stopping a run on SIGTERM or SIGINT without breaking a netlink call half-way.

A Python signal handler runs between any two bytecodes of the main thread, so an
exception it raises can land inside pyroute2's private asyncio event loop (a request
waiting in `CoreMessageQueue.get`, a loop being created): the request's coroutine is left
suspended on a loop that the teardown then closes, and when it is collected it fails
with "RuntimeError: Event loop is closed" (or a half-built loop with "no attribute
_ssock").  So the handlers installed by `stopping()` raise at once only outside
`shielded()` blocks; inside one (every pyroute2 call of `dataplane.kernel.build` runs in
one) the stop is remembered and raised when the block ends.  Everything is then removed
by the ordinary `finally` blocks on the way out.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Stopped(SystemExit):
    """The run was told to stop by a signal: a SystemExit with the shell's status for
    it, so that neither `except Exception` nor an asyncio callback swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum

    @property
    def status(self) -> int:
        """The shell's exit status for death by this signal: 128 + its number."""
        return 128 + self.signum

    def __str__(self) -> str:
        return signal.Signals(self.signum).name


_depth = 0
_pending: int | None = None


def _raise(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Stopped(signum)


def _handler(signum: int, _frame: FrameType | None) -> None:
    global _pending
    if _depth:
        _pending = _pending or signum
        return
    _raise(signum)


@contextmanager
def shielded() -> Iterator[None]:
    """Run the block whole: a stop signal arriving inside it is raised when it ends."""
    global _depth, _pending
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending is not None:
            signum, _pending = _pending, None
            _raise(signum)


@contextmanager
def stopping() -> Iterator[None]:
    """Within the block, SIGTERM raises `Stopped` and SIGINT KeyboardInterrupt, outside
    `shielded()` blocks; the previous handlers come back afterwards."""
    previous = {
        sig: signal.signal(sig, _handler) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
