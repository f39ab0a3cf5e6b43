"""One lifetime of a local node process: spawn, write a request, read its lines, kill.

The process adapter (process.py) drives one `Child` per node lifetime. Replies are read in
the calling thread: poll() on the stdout pipe with the request's deadline, then os.read in
pieces of up to 64 KiB (`LineReader`); no thread hands them over, which was most of the
adapter's cost per request (docs/performance.md). stderr is not on the request path: a
thread copies it into a `StderrSink`, which holds it until the lifetime is handed to an
adapter (a spare started ahead of need, spares.py) and then feeds that adapter's tail.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import threading
import time
from collections import deque

from ..forkserver import Forked, Program, fork
from ..wire import MAX_LINE
from ..wire.decode import Overlong
from . import reaper

PIECE = 1 << 16  # bytes a stdout line is read by
KILL_WAIT = 5.0  # seconds to wait for a SIGKILLed process to be reaped
JOIN_WAIT = 2.0  # seconds to wait for the stderr thread after its process is gone


class StderrTail:
    """The newest `limit` bytes of the node's stderr (all lifetimes) plus adapter markers."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buf = bytearray()
        self._dropped = 0
        self._lock = threading.Lock()

    def append(self, data: bytes) -> None:
        with self._lock:
            self._buf += data
            excess = len(self._buf) - self.limit
            if excess > 0:
                del self._buf[:excess]
                self._dropped += excess

    def note(self, text: str) -> None:
        """A marker line of the adapter's own (start, crash, exit), never from the node."""
        with self._lock:
            at_line_start = not self._buf or self._buf.endswith(b"\n")
        self.append((b"" if at_line_start else b"\n") + f"--- {text} ---\n".encode())

    def text(self) -> str:
        with self._lock:
            head = f"[... {self._dropped} earlier bytes dropped ...]\n" if self._dropped else ""
            return head + self._buf.decode("utf-8", errors="replace")


class StderrSink:
    """Where one lifetime's stderr goes: held (its newest `limit` bytes) until `attach`,
    then into the adapter's tail, after what was held."""

    def __init__(self, limit: int) -> None:
        self._held = StderrTail(limit)
        self._tail: StderrTail | None = None
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            (self._tail or self._held).append(data)

    def attach(self, tail: StderrTail) -> None:
        with self._lock:
            held = self._held.text()
            if held:
                tail.append(held.encode())
            self._tail = tail


class LineReader:
    """Lines from a pipe, read in the calling thread with a deadline.

    A line longer than `max_line` bytes (its newline included) is kept as its start only
    (an `Overlong`, which the reply check rejects) and ends the reading: no more than the
    bound plus one piece is ever held.
    """

    def __init__(self, fd: int, max_line: int = MAX_LINE) -> None:
        os.set_blocking(fd, False)  # a spurious wake-up must not block the read
        self._fd = fd
        self._max = max_line
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)  # POLLHUP and POLLERR are always reported
        self._lines: deque[bytes] = deque()
        self._part: list[bytes] = []  # the pieces of the line being read
        self._size = 0  # their length
        self._ended = False  # EOF, a read error or an over-long line: nothing more is read

    def read_line(self, deadline: float) -> bytes | None:
        """The next line (with its newline; the last one before EOF may lack it); b"" at the
        end of the stream; None when no line was complete by `deadline` (time.monotonic()).
        A deadline already past takes only what has arrived."""
        while not self._lines:
            if self._ended:
                return b""
            # poll() rounds its timeout up: nothing ready means the deadline has passed
            if not self._poll.poll(max(deadline - time.monotonic(), 0.0) * 1000):
                return None
            try:
                data = os.read(self._fd, PIECE if not self._part
                               else min(PIECE, self._max + 1 - self._size))
            except BlockingIOError:  # a spurious wake-up
                continue
            except (OSError, ValueError):  # the pipe was closed under us: the end
                data = b""
            self._take(data)
        return self._lines.popleft()

    def _take(self, data: bytes) -> None:
        if not data:
            if self._part:  # a last line without its newline
                self._lines.append(b"".join(self._part))
                self._part, self._size = [], 0
            self._ended = True
            return
        start = 0
        while (nl := data.find(b"\n", start)) >= 0:
            piece = data[start:nl + 1]  # the whole of `data` when it is one line: no copy
            start = nl + 1
            if self._size + len(piece) > self._max:
                self._overlong(piece)
                return
            if self._part:
                self._part.append(piece)
                piece = b"".join(self._part)
                self._part, self._size = [], 0
            self._lines.append(piece)
        if start < len(data):
            self._part.append(data[start:])
            self._size += len(data) - start
            if self._size > self._max:
                self._overlong(b"")

    def _overlong(self, piece: bytes) -> None:
        head = bytearray()
        for p in (*self._part, piece):
            head += p[:Overlong.KEEP - len(head)]
            if len(head) >= Overlong.KEEP:
                break
        self._lines.append(Overlong(bytes(head)))
        self._part, self._size = [], 0
        self._ended = True


def wait_exit(proc: subprocess.Popen[bytes] | Forked, timeout: float) -> bool:
    """Whether `proc` exited (and was reaped) within `timeout` seconds. Woken by its exit
    through a pidfd (Linux 5.3+): Popen.wait(timeout) polls with a growing sleep, which
    added ~6 ms to each kill of a node."""
    if proc.returncode is not None:
        return True
    if isinstance(proc, Forked):  # woken by the zygote's report of its exit
        return proc.settle(timeout) is not None
    try:
        fd = os.pidfd_open(proc.pid)  # our unreaped child: its pid cannot be reused meanwhile
    except (AttributeError, OSError):  # no pidfd here
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        ready = select.poll()
        ready.register(fd, select.POLLIN)
        ready.poll(timeout * 1000)
    finally:
        os.close(fd)
    return proc.poll() is not None


def _pump_stderr(fd: int, sink: StderrSink) -> None:
    """stderr chunks into the sink until EOF (a thread: stderr is not on the request path)."""
    try:
        while chunk := os.read(fd, PIECE):
            sink.write(chunk)
    except (OSError, ValueError):
        pass


def spawn(argv: list[str], env: dict[str, str], program: Program | None
          ) -> subprocess.Popen[bytes] | Forked:
    """The node's process, in a session of its own (killpg reaches all of it), its stdio on
    pipes: forked from `program`'s zygote when `argv` runs that program and a zygote serves
    here (conformance/forkserver/), otherwise started from `argv`."""
    forked = fork(program, argv, env=env)
    if forked is not None:
        return forked
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0, env=env,
                            start_new_session=True)


class Child:
    """One lifetime of the node: the process, its stdout reader and its stderr thread.

    The node's environment carries a marker of its own (reaper.NODE_ENV), which its
    descendants inherit: the kill finds by it those that left the process group.
    `program`: the node's command runs this Python program, which may be forked from a
    zygote (conformance/forkserver/) instead of started anew.
    """

    def __init__(self, argv: list[str], env: dict[str, str] | None, sink: StderrSink,
                 max_line: int = MAX_LINE, program: Program | None = None) -> None:
        reaper.become_subreaper()  # orphans of the node re-parent here, within reach
        self.token = reaper.node_token()
        env = {**(env if env is not None else os.environ), reaper.NODE_ENV: self.token}
        self.argv = argv
        self.sink = sink
        self.spawned = time.monotonic()
        self.proc = spawn(argv, env, program)
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr
        leader = reaper.stat(self.proc.pid)  # its start time tells its pid from a reused one
        self.start = leader.start if leader is not None else 0
        self.stdin_fd = self.proc.stdin.fileno()
        os.set_blocking(self.stdin_fd, False)  # a write waits in poll(), with a deadline
        self._out = select.poll()
        self._out.register(self.stdin_fd, select.POLLOUT)
        self.reader = LineReader(self.proc.stdout.fileno(), max_line)
        self.stderr_thread = threading.Thread(
            target=_pump_stderr, args=(self.proc.stderr.fileno(), sink),
            name=f"node-{self.proc.pid}-stderr", daemon=True)
        self.stderr_thread.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, data: bytes, deadline: float) -> bool:
        """Write one request line. False: the node closed its stdin (it died).

        Raises TimeoutError when the node does not read it before the deadline.
        """
        view = memoryview(data)
        while True:
            try:  # the pipe has room almost always: write first, wait only when it is full
                view = view[os.write(self.stdin_fd, view):]
            except BlockingIOError:
                pass
            except (OSError, ValueError):  # EPIPE: the read end is closed, the node is gone
                return False
            if not view:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self._out.poll(remaining * 1000)

    def read_line(self, deadline: float) -> bytes | None:
        """The next stdout line; b"" at EOF; None when the deadline passed (LineReader)."""
        return self.reader.read_line(deadline)

    def kill(self) -> int | None:
        """SIGKILL the whole process group and every process of the node that left it,
        reap the leader and the node's orphans, stop the stderr thread. Idempotent.

        Returns the exit status (negative: killed by that signal), None if unknown.
        """
        # The group id is the leader's pid (start_new_session). It stays reserved while the
        # unreaped leader or any other member exists; ESRCH just means they are all gone.
        found = reaper.kill_node(self.proc.pid, self.token, self.start)
        wait_exit(self.proc, KILL_WAIT)
        reaper.finish_node(self.proc.pid, self.token, found, KILL_WAIT, self.start)
        self.stderr_thread.join(JOIN_WAIT)
        streams = [self.proc.stdin, self.proc.stdout]
        if not self.stderr_thread.is_alive():  # closing a fd a thread still reads is unsafe
            streams.append(self.proc.stderr)
        for stream in streams:
            with contextlib.suppress(OSError, ValueError):
                assert stream is not None
                stream.close()
        return self.proc.returncode
