"""The harness's side of the fork server: one zygote per program and harness process,
started on first use, and `Forked`, a process it forked, used where a `subprocess.Popen`
would be.

What changes for the node: nothing it can observe through the protocol. Each lifetime is
still a new process (a new pid, in a session of its own), started on its data directory,
killed with SIGKILL; only the interpreter's start and the imports are paid once per run
instead of once per lifetime. What does change is internal to the process: its parent is
the zygote (the harness kills and reaps through its pid, group and a pidfd, as before), and
`/proc/PID/environ` shows the zygote's environment, not the one `os.environ` holds (the
node marker of reaper.py is set in `os.environ`, and so reaches what the node starts).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from .zygote import wait_readable

FORKSERVER_ENV = "CONFORMANCE_FORKSERVER"
SETTINGS = ("auto", "off")
READY_WAIT = 30.0  # seconds for a zygote to import its program
REPLY_WAIT = 10.0  # seconds for a zygote to fork one process
STOP_WAIT = 5.0  # seconds for a zygote to exit once its socket is closed
PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL


class ForkServerUnavailable(Exception):
    """The zygote could not start or serve a request: the caller starts the process itself."""


def enabled() -> bool:
    """CONFORMANCE_FORKSERVER: auto (default) or off."""
    value = os.environ.get(FORKSERVER_ENV, "auto")
    if value not in SETTINGS:
        raise ValueError(f"{FORKSERVER_ENV}={value!r}: expected one of {', '.join(SETTINGS)}")
    return value == "auto" and hasattr(os, "pidfd_open") and hasattr(socket, "send_fds")


@dataclass(frozen=True)
class Program:
    """A Python program the harness may start as a fork of a zygote: a command line that
    begins with `prefix` runs `module.main()` with the rest as `sys.argv[1:]`. `preload`:
    modules the program imports only later (lazily), imported by the zygote too."""

    prefix: tuple[str, ...]
    module: str
    preload: tuple[str, ...] = ()

    @classmethod
    def module_run(cls, module: str, preload: Sequence[str] = ()) -> Program:
        """`sys.executable -m module ...`."""
        return cls((sys.executable, "-m", module), module, tuple(preload))

    def args(self, argv: Sequence[str]) -> list[str] | None:
        """What follows the prefix in `argv`; None when `argv` is not this program."""
        n = len(self.prefix)
        return list(argv[n:]) if tuple(argv[:n]) == self.prefix else None


class Forked:
    """A process a zygote forked, with the part of `subprocess.Popen`'s interface the
    adapters use: `pid`, `stdin`/`stdout`/`stderr` (unbuffered, when PIPE), `poll()`,
    `wait(timeout)`, `kill()` and `returncode`."""

    def __init__(self, pid: int, pidfd: int, status_fd: int,
                 streams: tuple[IO[bytes] | None, IO[bytes] | None, IO[bytes] | None]) -> None:
        self.pid = pid
        self.args: list[str] = []
        self.returncode: int | None = None
        self.stdin, self.stdout, self.stderr = streams
        self._pidfd = pidfd
        self._status = status_fd
        self._text = b""
        self._lock = threading.Lock()

    def poll(self) -> int | None:
        return self.settle(0.0)

    def wait(self, timeout: float | None = None) -> int:
        code = self.settle(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        return code

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def send_signal(self, sig: int) -> None:
        with self._lock:
            if self.returncode is None and self._pidfd >= 0:
                with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
                    signal.pidfd_send_signal(self._pidfd, sig)

    def settle(self, timeout: float | None) -> int | None:
        """The exit status once the zygote has written it, waiting up to `timeout` seconds
        (None: no bound). A zygote gone without writing it (killed) leaves the pidfd to
        tell whether the process ended: then its status is unknown, reported as SIGKILL
        (the zygote's death sends it to its children)."""
        with self._lock:
            if self.returncode is not None:
                return self.returncode
            deadline = None if timeout is None else time.monotonic() + timeout
            ready = select.poll()
            ready.register(self._status, select.POLLIN)
            while True:
                left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                if ready.poll(None if left is None else left * 1000):
                    chunk = os.read(self._status, 64)
                    if chunk:
                        self._text += chunk
                        if not self._text.endswith(b"\n"):
                            continue
                        self._finish(int(self._text))
                    elif wait_readable(self._pidfd, left):
                        self._finish(-signal.SIGKILL)
                    else:
                        return None
                    return self.returncode
                if left is not None and left <= 0:
                    return None

    def _finish(self, code: int) -> None:
        self.returncode = code
        for fd in (self._status, self._pidfd):
            os.close(fd)
        self._status = self._pidfd = -1

    def __del__(self) -> None:
        for fd in (self._status, self._pidfd):
            if fd >= 0:
                os.close(fd)


class ForkServer:
    """One zygote (zygote.py) for `program`, a child of this harness process."""

    def __init__(self, program: Program) -> None:
        self.program = program
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._sock = ours
        self._lock = threading.Lock()
        self._broken: str | None = None
        try:
            with theirs:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "conformance.forkserver.zygote",
                     str(theirs.fileno()), program.module, *program.preload],
                    pass_fds=[theirs.fileno()], stdin=DEVNULL, stdout=DEVNULL,
                    start_new_session=True)  # a Ctrl-C at the terminal is the harness's
        except OSError as exc:
            ours.close()
            raise ForkServerUnavailable(f"cannot start the fork server: {exc}") from exc
        try:
            self._receive(READY_WAIT)
        except ForkServerUnavailable:
            self.close()
            raise

    def _receive(self, timeout: float) -> tuple[dict[str, Any], list[int]]:
        if not wait_readable(self._sock.fileno(), timeout):
            raise ForkServerUnavailable(f"the fork server did not answer within {timeout:g} s")
        try:
            data, fds, _flags, _addr = socket.recv_fds(self._sock, 1 << 16, 1)
            message = json.loads(data) if data else {"error": "the fork server exited"}
        except (OSError, ValueError) as exc:
            raise ForkServerUnavailable(f"the fork server's reply: {exc}") from exc
        if "error" in message:
            for fd in fds:
                os.close(fd)
            raise ForkServerUnavailable(f"the fork server: {message['error']}")
        return message, fds

    def spawn(self, args: Sequence[str], *, env: Mapping[str, str] | None = None,
              stdin: int = PIPE, stdout: int = PIPE, stderr: int = PIPE,
              new_session: bool = True, end_signal: int = signal.SIGKILL) -> Forked:
        """A new process running the program with `args`: stdin/stdout/stderr are PIPE,
        DEVNULL or a descriptor (as for Popen); `new_session` as Popen's
        start_new_session; `end_signal` is what it gets when the zygote ends (the harness
        exited or died). ForkServerUnavailable when the zygote cannot serve (the caller
        then starts the process itself)."""
        if self._broken is not None:
            raise ForkServerUnavailable(self._broken)
        ends: list[int] = []  # the child's ends: closed here once sent
        streams: list[IO[bytes] | None] = []  # ours (PIPE)
        status_r = -1
        try:
            for n, spec in enumerate((stdin, stdout, stderr)):
                if spec == PIPE:
                    r, w = os.pipe()
                    child_end, our_end = (r, w) if n == 0 else (w, r)
                    ends.append(child_end)
                    streams.append(open(our_end, "wb" if n == 0 else "rb",  # noqa: SIM115
                                        buffering=0))  # Forked holds it, as Popen would
                else:
                    ends.append(os.open(os.devnull, os.O_RDWR) if spec == DEVNULL
                                else os.dup(spec))
                    streams.append(None)
            status_r, status_w = os.pipe()
            ends.append(status_w)
            request = {"args": list(args), "env": dict(env if env is not None else os.environ),
                       "cwd": os.getcwd(), "session": new_session, "end_signal": end_signal}
            with self._lock:
                try:
                    socket.send_fds(self._sock, [json.dumps(request).encode()], ends)
                    message, fds = self._receive(REPLY_WAIT)
                except (OSError, ForkServerUnavailable) as exc:
                    # a reply may still come: this zygote is not asked again (and not
                    # stopped: the processes it started earlier live on)
                    self._broken = f"the fork server failed: {exc}"
                    raise ForkServerUnavailable(self._broken) from exc
            if len(fds) != 1 or not isinstance(message.get("pid"), int):
                for fd in fds:
                    os.close(fd)
                self._broken = f"the fork server's reply: {message!r}"
                raise ForkServerUnavailable(self._broken)
        except BaseException:
            for stream in streams:
                if stream is not None:
                    stream.close()
            if status_r >= 0:
                os.close(status_r)
            raise
        finally:
            for fd in ends:
                os.close(fd)
        a, b, c = streams
        forked = Forked(message["pid"], fds[0], status_r, (a, b, c))
        forked.args = [*self.program.prefix, *args]
        return forked

    def alive(self) -> bool:
        return self._broken is None and self._proc.poll() is None

    def close(self) -> None:
        """End the zygote (its children die with it) and reap it."""
        self._sock.close()
        try:
            self._proc.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(STOP_WAIT)


# This process's zygotes by program, None once one could not start or stopped serving (it
# is not asked again); and every one started, ended at exit (their processes live until then).
_servers: dict[Program, ForkServer | None] = {}
_started: list[ForkServer] = []
_servers_pid = 0
_servers_lock = threading.Lock()


def server_for(program: Program) -> ForkServer | None:
    """This process's zygote for `program`, started on first use; None when fork servers
    are off (CONFORMANCE_FORKSERVER=off), unsupported here, or the zygote failed (the
    caller starts processes itself, which reports the program's own error)."""
    global _servers_pid
    if not enabled():
        return None
    with _servers_lock:
        if _servers_pid != os.getpid():  # a fork of the harness does not share its zygotes
            _servers.clear()
            _started.clear()
            _servers_pid = os.getpid()
            atexit.register(close_all)
        if program not in _servers:
            try:
                started = ForkServer(program)
            except ForkServerUnavailable:
                _servers[program] = None
            else:
                _servers[program] = started
                _started.append(started)
        server = _servers[program]
        if server is not None and not server.alive():
            server = _servers[program] = None
        return server


def fork(program: Program | None, argv: Sequence[str], **spawn_args: Any) -> Forked | None:
    """`argv` as a fork of `program`'s zygote (ForkServer.spawn's keywords), or None when
    `argv` is not that program's command line or no zygote serves here: the caller then
    starts it from `argv` (which also reports the program's own errors)."""
    args = program.args(argv) if program is not None else None
    server = server_for(program) if program is not None and args is not None else None
    if server is None or args is None:
        return None
    try:
        return server.spawn(args, **spawn_args)
    except ForkServerUnavailable:
        return None


def close_all() -> None:
    """End every zygote this process started (at exit: nothing outlives the harness)."""
    with _servers_lock:
        servers = list(_started) if _servers_pid == os.getpid() else []
        _started.clear()
        _servers.clear()
    for server in servers:
        server.close()
