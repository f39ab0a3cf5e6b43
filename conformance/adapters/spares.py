"""Node processes started ahead of need (issue 15.2): a lifetime's process is spawned before
the harness asks for it, so that the node's interpreter start and imports overlap the
harness's own work instead of adding to it. The faults stay what they are: a crash is a
SIGKILL of the process group, a restart a new process on the same data directory.

- **First lifetimes** (`FirstLifetimes`): when an adapter is made, the process of the next
  adapter with the same command is started in the background, on a fresh, empty data
  directory of its own (a temporary directory, or a crash-simulating filesystem mount).
  Nothing changes that directory before an adapter takes it, so the node cannot tell the
  process from one started later: no protocol addition is needed.
- **Restarts** (`Continuations`): the process of an adapter's next lifetime, started while
  the current one runs, on the same data directory. Only for a node whose `hello` said
  `prestart: true` (docs/protocol.md): it touches nothing under its data directory before
  its first request, which the harness sends only after the crash (and a power loss's
  drop) is complete. A spare that is never used costs a process start and a kill, so one
  is started only where the next lifetime is likely, as learned over the run.

`CONFORMANCE_SPARES=off` switches both off (to measure them, or to rule them out).
"""

from __future__ import annotations

import os
import threading
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Protocol, TypeVar

from .base import AdapterError

SPARES_ENV = "CONFORMANCE_SPARES"
SETTINGS = ("auto", "off")
KEYS = 4  # commands with a first-lifetime spare at once (a run has one or a few)
# A restart spare is started when at least this share of the lifetimes k of a command were
# followed by a lifetime k+1: an unused one costs about what a used one saves.
LIKELY = 0.5
TAKE_WAIT = 60.0  # seconds to wait for a spare being made (a mount, a process start)
THREAD_PREFIX = "node-spare"


def enabled() -> bool:
    """CONFORMANCE_SPARES: auto (default) or off."""
    value = os.environ.get(SPARES_ENV, "auto")
    if value not in SETTINGS:
        raise AdapterError(f"{SPARES_ENV}={value!r}: expected one of {', '.join(SETTINGS)}")
    return value == "auto"


_executor: tuple[int, ThreadPoolExecutor] | None = None
_executor_lock = threading.Lock()


def submit(fn: Callable[[], T]) -> Future[T] | None:
    """`fn` in the background (two workers: a mount must not hold up a process start); None
    when the interpreter is shutting down."""
    global _executor
    with _executor_lock:
        if _executor is None or _executor[0] != os.getpid():  # a fork has no workers
            _executor = (os.getpid(), ThreadPoolExecutor(2, thread_name_prefix=THREAD_PREFIX))
        pool = _executor[1]
    try:
        return pool.submit(fn)
    except RuntimeError:  # "cannot schedule new futures after interpreter shutdown"
        return None


_reclaims: set[Future[None]] = set()
_reclaims_lock = threading.Lock()


def reclaim(release: Callable[[], None]) -> None:
    """`release` in the background (an unmount waits ~0.1 s for fusermount and the
    daemon, removing a directory tree tens of ms on a loaded machine: off the case's path),
    at once when it cannot be (interpreter shutdown). What is submitted is done before the
    interpreter's exit handlers run (its workers are joined)."""
    done = submit(release)
    if done is None:
        release()
        return
    with _reclaims_lock:
        _reclaims.add(done)
    done.add_done_callback(_forget)


def _forget(done: Future[None]) -> None:
    with _reclaims_lock:
        _reclaims.discard(done)


def settle(timeout: float) -> bool:
    """Wait until every `reclaim` so far is done; False when `timeout` passed first."""
    with _reclaims_lock:
        pending = list(_reclaims)
    return not wait(pending, timeout=timeout).not_done


class Releasable(Protocol):
    def release(self) -> None: ...


T = TypeVar("T")
R = TypeVar("R", bound=Releasable)


class FirstLifetimes:
    """Spares per command (`key`), made ahead of need by `make` in the background, from the
    second adapter of that command on (a command used once, as by most tests, gets none):
    as many as adapters of the command were open at once (`--jobs`), one for a serial run.
    A spare never taken is released by its own finalizer (at exit at the latest), or when
    more than KEYS commands have spares."""

    def __init__(self, submit_fn: Callable[[Callable[[], Any]], Future[Any] | None] | None = None
                 ) -> None:
        # where spares are made: `submit` (shared with the process adapter) unless given
        self._submit = submit_fn or submit
        self._lock = threading.Lock()
        self._ready: OrderedDict[Hashable, deque[Future[Any]]] = OrderedDict()
        self._seen: set[Hashable] = set()
        self._open: Counter[Hashable] = Counter()
        self._depth: Counter[Hashable] = Counter()

    def take(self, key: Hashable, make: Callable[[], R | None]) -> R | None:
        """A spare made for `key` (None when there is none, or it could not be made); the
        ones taken are put in the making again. The caller calls `closed(key)` when its
        adapter is done."""
        with self._lock:
            self._open[key] += 1
            self._depth[key] = max(self._depth[key], self._open[key])
            queue = self._ready.pop(key, deque())
            ready = queue.popleft() if queue else None
            if key in self._seen:
                while len(queue) < self._depth[key] and (made := self._submit(make)) is not None:
                    queue.append(made)
            self._seen.add(key)
            if queue:
                self._ready[key] = queue
            evicted: list[Future[Any]] = []
            while len(self._ready) > KEYS:
                evicted += self._ready.popitem(last=False)[1]
        for old in evicted:
            old.add_done_callback(_release_result)
        if ready is None:
            return None
        try:
            spare: R | None = ready.result(timeout=TAKE_WAIT)
        except Exception:  # noqa: BLE001 - the adapter starts its node itself, and reports why
            return None
        return spare

    def closed(self, key: Hashable) -> None:
        """An adapter that took from `key` is done."""
        with self._lock:
            self._open[key] -= 1

    def clear(self) -> list[Future[Any]]:
        """Release every spare not taken (once made: returns their makings) and forget what
        was learned: the next adapter of a command starts as the first one did."""
        with self._lock:
            evicted = [f for queue in self._ready.values() for f in queue]
            self._ready.clear()
            self._seen.clear()
            self._depth.clear()
        for old in evicted:
            old.add_done_callback(_release_result)
        return evicted


def _release_result(future: Future[Any]) -> None:
    spare = None if future.cancelled() or future.exception() else future.result()
    if spare is not None:
        spare.release()


class Continuations:
    """How often a lifetime k of a command was followed by a lifetime k+1, over the run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reached: dict[Hashable, Counter[int]] = {}

    def started(self, key: Hashable, k: int) -> None:
        """An adapter of `key` starts its k-th lifetime."""
        with self._lock:
            self._reached.setdefault(key, Counter())[k] += 1

    def likely(self, key: Hashable, k: int) -> bool:
        """Whether a lifetime k + 1 is likely to follow the lifetime k (a first one is)."""
        with self._lock:
            reached = self._reached.get(key, Counter())
            return (reached[k + 1] + 1) / (reached[k] + 1) >= LIKELY


class Prestart:
    """The commands whose node said `prestart: true` in its last hello."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._yes: set[Hashable] = set()

    def heard(self, key: Hashable, prestart: bool) -> None:
        with self._lock:
            if prestart:
                self._yes.add(key)
            else:
                self._yes.discard(key)

    def says(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._yes


FIRST = FirstLifetimes()
PRESTART = Prestart()
CONTINUATIONS = Continuations()
