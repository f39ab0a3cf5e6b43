"""Cases run `jobs` at a time on a thread pool (`--jobs N`), with a serial run's results.

Each case already gets its own adapter, node and data directory, and its randomness is
seeded from (seed, case id), never from the order cases run in, so only the bookkeeping
changes here:

- results are handed to `on_result`, and returned, in the cases' order (a finished case
  waits for the ones before it), so progress and reports read as a serial run's;
- at most `jobs` cases are in flight: once the first `give_up_after` cases (in order) show
  that the node never starts, nothing more is submitted, the cases in flight are released
  and every later case is `not_run`, as in a serial run;
- an interrupt (Ctrl-C, SIGTERM: `interrupts.Interrupted` in the main thread) submits
  nothing more, closes the adapter of every running case (which kills its node and removes
  its directory, so the worker's case ends at once), waits for the workers, and re-raises.

A thread pool is enough: the harness mostly waits on external nodes. The in-process
reference is bound by the GIL and gains nothing (the CLI keeps it serial).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from .adapters.base import Adapter
from .cases import Case, CaseResult

# How long the main thread sleeps between looks at its workers (a signal cuts it short).
POLL = 0.5
# How long released workers get to return after their nodes were killed: a request on a
# dead node fails at once, so this only bounds a worker stuck somewhere unexpected.
RELEASE_WAIT = 30.0


class Released(Exception):
    """The run stopped (interrupted, or the node never starts): no new adapter is made."""


class _Live:
    """The adapters of the cases in flight, by case index, so that the main thread can
    release them; after `stop()` no adapter is made any more."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._adapters: dict[int, list[Adapter]] = {}
        self._stopped = False

    def factory(self, index: int, make: Callable[[Case], Adapter]) -> Callable[[Case], Adapter]:
        def tracked(case: Case) -> Adapter:
            with self._lock:  # checked before and after: stop() may run while it is made
                if self._stopped:
                    raise Released("the run was stopped before this case started")
            adapter = make(case)
            with self._lock:
                self._adapters.setdefault(index, []).append(adapter)
                stopped = self._stopped
            if stopped:
                adapter.close()
                raise Released("the run was stopped before this case started")
            return adapter
        return tracked

    def forget(self, index: int) -> None:
        with self._lock:
            self._adapters.pop(index, None)

    def release(self, index: int) -> None:
        """Close the adapters of one case in flight (its worker then ends it at once)."""
        with self._lock:
            adapters = list(self._adapters.get(index, ()))
        for adapter in adapters:
            adapter.close()

    def stop(self) -> list[Adapter]:
        """No new adapter from now on; close and return every one in flight."""
        with self._lock:
            self._stopped = True
            adapters = [a for group in self._adapters.values() for a in group]
        for adapter in adapters:
            adapter.close()
        return adapters


def run_parallel(cases: Sequence[Case], jobs: int,
                 run_one: Callable[[Case, Callable[[Case], Adapter]], CaseResult],
                 make: Callable[[Case], Adapter],
                 on_result: Callable[[CaseResult], None],
                 give_up: Callable[[list[CaseResult]], str | None],
                 not_run: Callable[[Case, str], CaseResult]) -> list[CaseResult]:
    """Run `cases` with `run_one(case, factory)`, `jobs` at a time; see the module doc.
    `on_result` sees every result that ran, in order; `give_up(first results)` is asked
    once, when the first results in order number as many as it needs (it returns the
    reason the node never starts, or None) -- run_all passes its own rule."""
    live = _Live()
    done: dict[int, CaseResult] = {}
    results: list[CaseResult] = []
    in_flight: dict[Future[CaseResult], int] = {}
    stuck: str | None = None
    submitted = 0

    def work(index: int, case: Case) -> CaseResult:
        try:
            return run_one(case, live.factory(index, make))
        finally:
            live.forget(index)

    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="case")
    try:
        while len(results) < len(cases) and stuck is None:
            while submitted < len(cases) and len(in_flight) < jobs:
                in_flight[pool.submit(work, submitted, cases[submitted])] = submitted
                submitted += 1
            finished, _ = wait(in_flight, timeout=POLL, return_when=FIRST_COMPLETED)
            for future in finished:
                done[in_flight.pop(future)] = future.result()
            while len(results) in done and stuck is None:  # hand over the next ones in order
                results.append(done.pop(len(results)))
                on_result(results[-1])
                stuck = give_up(results)
        if stuck is not None:  # the node never starts: release the cases already in flight
            for index in in_flight.values():
                live.release(index)
            wait(in_flight, timeout=RELEASE_WAIT)
            results += [not_run(case, stuck) for case in cases[len(results):]]
        return results
    except BaseException:  # Interrupted, or a harness bug: stop every node before leaving
        adapters = live.stop()
        wait(in_flight, timeout=RELEASE_WAIT)
        for adapter in adapters:  # a node started between close() and the check in start()
            if adapter.alive():
                adapter.crash()
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
