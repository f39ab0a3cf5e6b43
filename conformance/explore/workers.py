"""Campaigns in worker processes: `explore --jobs N`.

Hypothesis and the in-process reference are bound by the interpreter's lock, and a
campaign patches Hypothesis' engine module for its duration (engine.py), so campaigns run
side by side only in separate processes. Each worker is a plain `python -m
conformance.explore.worker_process` process, the same as the `conformance` command in what it
cleans up (its nodes, temporary directories and mounts, at exit or on SIGTERM), that:

1. reads a `Recipe` on its stdin and resolves the implementation itself, as the command
   would (`probe`): its own nodes and data directories;
2. then reads one `CampaignPlan` at a time, runs it (`run_campaign`), and answers with
   the `CampaignOutcome` (or the traceback of a harness error), until it reads None.

Messages are pickles over the worker's stdin and a duplicate of its stdout (its fd 1 then
points at stderr, so that nothing it prints can corrupt them): the two ends are the same
package, never another program.

`in_workers(recipe, planner, jobs)` starts `jobs` workers, gives each the next plan when
it is free, and yields the outcomes **in campaign order** (a finished campaign waits for
the ones before it), so the run merges them as a serial run would. Closing the generator
(the run is over, stopped at the first failure, or interrupted) ends the workers: None
to the idle ones, SIGTERM to the busy ones, SIGKILL after `STOP_WAIT` and a sweep of
what a killed worker left (leftovers.sweep: its nodes, directories, mounts).

Signals: a worker ignores SIGINT (Ctrl-C on a terminal reaches the whole process group;
the run decides) and dies with its parent (PR_SET_PDEATHSIG: SIGTERM), so that no
worker outlives the command.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .campaign import CampaignOptions, CampaignOutcome, CampaignPlan

if TYPE_CHECKING:
    from .run import _Planner

# How long the run waits for a worker to end after it was told to (None, then SIGTERM),
# before it kills it: a worker ends a campaign's node at once, so this only bounds a
# worker stuck somewhere unexpected.
STOP_WAIT = 15.0
# How long the main thread sleeps between looks at its workers (a signal cuts it short).
POLL = 0.5
PARENT_ENV = "CONFORMANCE_EXPLORE_PARENT"


class WorkerError(RuntimeError):
    """A worker failed: a harness error in a campaign (its traceback), or it died."""


@dataclass(frozen=True)
class Recipe:
    """What a worker needs to explore as the run does (run.explore's arguments)."""

    spec: str
    seed: int
    timeout: float
    hide: frozenset[str]
    profile_capabilities: frozenset[str] | None
    options: CampaignOptions
    database: str | None


class _Worker:
    """One worker process, seen from the run."""

    def __init__(self, number: int, recipe: Recipe, inbox: queue.Queue[tuple[_Worker, Any]]
                 ) -> None:
        self.number = number
        self.plan: CampaignPlan | None = None  # the campaign it runs
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH", "")) if p))
        env[PARENT_ENV] = str(os.getpid())
        self.proc = subprocess.Popen([sys.executable, "-m", "conformance.explore.worker_process"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._stdin: IO[bytes] = self.proc.stdin
        self._send(recipe)
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout, inbox),
                                        name=f"explore-worker-{number}", daemon=True)
        self._reader.start()

    def _send(self, message: object) -> None:
        pickle.dump(message, self._stdin)
        self._stdin.flush()

    def _read(self, stream: IO[bytes], inbox: queue.Queue[tuple[_Worker, Any]]) -> None:
        try:
            while True:
                inbox.put((self, pickle.load(stream)))
        except Exception:  # noqa: BLE001 - EOF (it ended or died) or a torn message
            inbox.put((self, ("exit", None)))

    def give(self, plan: CampaignPlan) -> None:
        self.plan = plan
        self._send(plan)

    def stop(self) -> None:
        """Ask it to end: None when idle (it exits cleanly), SIGTERM while it runs."""
        with contextlib.suppress(OSError, ValueError):
            if self.plan is None:
                self._send(None)
                self._stdin.close()
            else:
                self.proc.send_signal(signal.SIGTERM)

    def exit_status(self) -> str:
        code = self.proc.poll()
        if code is None:
            return "still running"
        return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"


def in_workers(recipe: Recipe, planner: _Planner, jobs: int) -> Iterator[CampaignOutcome]:
    """Run the planner's campaigns in `jobs` workers; yield the outcomes in campaign order
    (module doc). Closing the generator ends the workers."""
    inbox: queue.Queue[tuple[_Worker, Any]] = queue.Queue()
    workers: list[_Worker] = []
    done: dict[int, CampaignOutcome] = {}
    running = 0
    next_out = 0
    try:
        for n in range(jobs):  # (one at a time: those started are stopped if one fails)
            workers.append(_Worker(n + 1, recipe, inbox))
        idle: list[_Worker] = []
        while True:
            try:
                worker, (kind, payload) = inbox.get(timeout=POLL)
            except queue.Empty:
                continue
            if kind == "ready":
                idle.append(worker)
            elif kind == "outcome":
                assert isinstance(payload, CampaignOutcome)
                worker.plan = None
                running -= 1
                planner.done(payload)
                done[payload.index] = payload
                idle.append(worker)
            elif kind == "error":
                raise WorkerError(f"explore worker {worker.number}"
                                  + (f", campaign {worker.plan.index + 1}" if worker.plan else "")
                                  + f": {payload}")
            else:  # "exit": it ended without being told to
                worker.proc.wait(timeout=STOP_WAIT)
                raise WorkerError(f"explore worker {worker.number} ended unexpectedly "
                                  f"({worker.exit_status()})"
                                  + (f" during campaign {worker.plan.index + 1}"
                                     if worker.plan else ""))
            while next_out in done:
                yield done.pop(next_out)
                next_out += 1
            while idle:
                plan = planner.next()
                if plan is None:
                    break
                idle.pop().give(plan)
                running += 1
            if running == 0 and not done:
                return
    finally:
        _stop(workers)


def _stop(workers: list[_Worker]) -> None:
    for w in workers:
        w.stop()
    deadline = time.monotonic() + STOP_WAIT
    killed = False
    for w in workers:
        try:
            w.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait()
            killed = True
        with contextlib.suppress(OSError, ValueError):
            w._stdin.close()
    if killed:  # what a killed worker left: its nodes, directories, mounts
        from ..leftovers import sweep

        sweep()


# -- the worker's side ------------------------------------------------------------------------

def _die_with_parent() -> None:
    """SIGTERM when the run's process ends, however it ends (Linux)."""
    parent = int(os.environ.get(PARENT_ENV, "0"))
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if parent and os.getppid() != parent:  # it ended before the line above
        sys.exit(1)


def worker_main() -> int:
    """A worker's life (module doc); its exit status."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # what anything prints goes to stderr, never into the messages
    source = sys.stdin.buffer

    def send(message: object) -> None:
        pickle.dump(message, out)
        out.flush()

    from .. import interrupts

    try:
        with interrupts.handled():  # SIGTERM: the same clean stop as the command's
            return _serve(source, send)
    except interrupts.Interrupted as exc:  # its nodes were closed on the way out
        return exc.exit_status


def _serve(source: IO[bytes], send: Callable[[object], None]) -> int:
    """Read the recipe, then one plan at a time until None (module doc)."""
    from ..impls import resolve
    from .campaign import run_campaign
    from .database import open_database
    from .driver import probe

    recipe: Recipe = pickle.load(source)
    try:
        impl = resolve(recipe.spec, seed=recipe.seed, timeout=recipe.timeout,
                       profile_capabilities=recipe.profile_capabilities)
        target = probe(recipe.spec, seed=recipe.seed, timeout=recipe.timeout,
                       hide=recipe.hide, impl=impl)
        db = open_database(recipe.database)
    except Exception:  # noqa: BLE001 - told to the run, which raises it
        send(("error", traceback.format_exc()))
        return 1
    send(("ready", target.identity))
    while True:
        try:
            plan = pickle.load(source)
        except EOFError:
            return 0
        if plan is None:
            return 0
        try:
            send(("outcome", run_campaign(target, plan, recipe.options, db)))
        except Exception:  # noqa: BLE001 - a harness error: the run raises it
            send(("error", traceback.format_exc()))
            return 1


