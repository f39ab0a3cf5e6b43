"""SIGINT, SIGTERM and SIGHUP take the same clean path: an `Interrupted` exception.

    with interrupts.handled():     # the CLI, around a whole run
        ...                        # a signal raises Interrupted (a KeyboardInterrupt)
    with interrupts.critical():    # spawn-and-record, release: never half done
        ...

`Interrupted` unwinds the run like Ctrl-C does, through every `finally` that closes an
adapter (which kills its node and removes its temporary directory). A signal that arrives
inside `critical()` is held until the outermost one ends, so that a node is never started
without being recorded, nor forgotten before it is killed. Once one signal started the
clean stop, further ones are ignored: the cleanup it runs is bounded by timeouts, and a
second Ctrl-C must not cut it short and leak what it was removing.

A signal that was ignored when the run started (`nohup`, a background job of a
non-interactive shell) stays ignored.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None))
                if s is not None)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal; `exit_status` is the shell's 128 + its number."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(f"interrupted by {self.name}")

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


class _State:
    def __init__(self) -> None:
        self.installed = False
        self.depth = 0  # nesting of critical() in the main thread
        self.pending: int | None = None
        self.stopping = False  # Interrupted was raised: the clean stop is under way


_state = _State()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _handler(signum: int, frame: FrameType | None) -> None:
    if _state.stopping:
        return
    if _state.depth > 0:
        _state.pending = _state.pending or signum
        return
    _state.stopping = True
    raise Interrupted(signum)


@contextmanager
def handled() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into Interrupted for the duration (main thread only;
    elsewhere a no-op); the previous handlers are restored after."""
    if not _main_thread() or _state.installed:
        yield
        return
    previous: dict[int, object] = {}
    for signum in SIGNALS:
        current = signal.getsignal(signum)
        if current is signal.SIG_IGN:
            continue
        previous[signum] = current
        signal.signal(signum, _handler)
    _state.installed, _state.depth, _state.pending, _state.stopping = True, 0, None, False
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        _state.installed = False


@contextmanager
def critical() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP (as `handled` turns them into Interrupted) until the
    block ends; then raise the held one. No-op outside the main thread, where no handler
    runs anyway."""
    if not _main_thread():
        yield
        return
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
        if _state.depth == 0 and _state.pending is not None and not _state.stopping:
            signum, _state.pending = _state.pending, None
            _state.stopping = True
            raise Interrupted(signum)


def ignore_until_exit() -> None:
    """For a process about to exit (the console entry point, after its run): SIGINT, SIGTERM
    and SIGHUP are ignored from now on. What is left is the interpreter's own shutdown (atexit
    hooks and finalizers that release what the run held, each bounded by a timeout); a signal
    there would kill the process mid-cleanup (or raise KeyboardInterrupt in an atexit hook)
    and report a signal death for a run that had finished. Main thread only."""
    if not _main_thread():
        return
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
