"""The fork server's own process (the "zygote"): it imports a Python program once, then
forks a new process for every lifetime the harness asks for.

    python -m conformance.forkserver.zygote FD MODULE [PRELOAD ...]

FD is this end of a SOCK_SEQPACKET socket pair whose other end the harness holds
(client.py). After importing MODULE (and the PRELOAD modules, those MODULE imports only
later), the zygote says `{"ready": true}`, then serves one request per message:

    {"args": [...], "env": {...}, "cwd": "...", "session": true, "end_signal": 9}
    + four file descriptors (SCM_RIGHTS): stdin, stdout, stderr, status

and replies `{"pid": N}` with a pidfd of the new process attached (so the harness signals
that process, never a reused pid), or `{"error": "..."}`. The new process is a fork of the
zygote: a new pid, its own session when asked, stdio on the given descriptors, the given
environment, working directory and `sys.argv`; it runs `MODULE.main()` and exits with what
a `python -m MODULE` would. When it has exited, the zygote reaps it and writes its exit
status (as `subprocess` gives it: negative for a signal) to the status descriptor, then
closes it.

The zygote never runs the program's code beyond its imports, so nothing of one lifetime
reaches the next: each starts from the same freshly imported modules, as a new interpreter
would. When the harness's end closes (the harness exited, or was killed), the zygote sends
each child its end signal (SIGKILL unless the request said otherwise), reaps it and exits;
a child whose zygote died gets that signal too (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import os
import select
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from typing import Any

PR_SET_PDEATHSIG = 1  # linux/prctl.h
MAX_MESSAGE = 1 << 20  # bytes of one request (the environment is most of it)
FDS = 4  # stdin, stdout, stderr, status
READY_WAIT = 5.0  # seconds for a new child to be in its own session before the reply


def wait_readable(fd: int, timeout: float | None) -> bool:
    """Whether `fd` became readable (or hung up) within `timeout` seconds (None: no bound)."""
    ready = select.poll()
    ready.register(fd, select.POLLIN)
    return bool(ready.poll(None if timeout is None else timeout * 1000))


class _Zygote:
    def __init__(self, sock: socket.socket, entry: Callable[[], Any], argv0: str) -> None:
        self.sock = sock
        self.entry = entry
        self.argv0 = argv0
        self.pid = os.getpid()
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.children: dict[int, tuple[int, int, int]] = {}  # pidfd -> (pid, status, end)
        self.poll = select.poll()
        self.poll.register(sock.fileno(), select.POLLIN)

    def serve(self) -> int:
        while True:
            for fd, _events in self.poll.poll():
                if fd != self.sock.fileno():
                    self._reap(fd)
                elif not self._request():
                    self._end()
                    return 0

    def _end(self) -> None:
        """The harness is gone, or done: its processes end with it (their end signal, as
        PDEATHSIG would send it), and are reaped here rather than left to whoever inherits
        them."""
        for pidfd, (_pid, _status, end) in self.children.items():
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(pidfd, end)
        for pidfd in list(self.children):
            self._reap(pidfd)

    def _request(self) -> bool:
        """Serve one request; False when the harness is gone."""
        try:
            data, fds, flags, _addr = socket.recv_fds(self.sock, MAX_MESSAGE, FDS)
        except OSError:
            return False
        if not data and not fds:
            return False  # EOF: the harness's end is closed
        if len(fds) != FDS or flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            for fd in fds:
                os.close(fd)
            self._reply({"error": f"malformed request ({len(data)} bytes, {len(fds)} fds)"})
            return True
        ready_r = ready_w = -1
        try:
            request = json.loads(data)
            ready_r, ready_w = os.pipe()
            pid = os.fork()
        except (ValueError, OSError) as exc:
            for fd in (*fds, ready_r, ready_w):
                if fd >= 0:
                    os.close(fd)
            self._reply({"error": f"{type(exc).__name__}: {exc}"})
            return True
        if pid == 0:
            os.close(ready_r)
            self._child(request, fds, ready_w)  # never returns
        os.close(ready_w)
        # the reply waits until the child is in its own session: a kill of its process group
        # (the harness's crash) must never come before the group exists
        wait_readable(ready_r, READY_WAIT)
        os.close(ready_r)
        for fd in fds[:3]:  # the child's ends; the status end stays here until the reaping
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        self.children[pidfd] = (pid, fds[3], _end_signal(request))
        self.poll.register(pidfd, select.POLLIN)
        self._reply({"pid": pid}, [pidfd])
        return True

    def _reply(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        with contextlib.suppress(OSError):  # the harness is gone: the next receive ends it
            socket.send_fds(self.sock, [json.dumps(message).encode()], fds or [])

    def _reap(self, pidfd: int) -> None:
        pid, status_fd, _end = self.children.pop(pidfd)
        self.poll.unregister(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        with contextlib.suppress(OSError):  # the harness no longer waits for it
            os.write(status_fd, b"%d\n" % os.waitstatus_to_exitcode(status))
        os.close(status_fd)

    def _child(self, request: dict[str, Any], fds: list[int], ready: int) -> None:
        code = 1
        try:
            # nothing of the zygote's or of other lifetimes stays open in this one
            self.sock.close()
            for pidfd, (_pid, status_fd, _end) in self.children.items():
                os.close(pidfd)
                os.close(status_fd)
            os.close(fds[3])
            if request.get("session", True):
                os.setsid()
            self.libc.prctl(PR_SET_PDEATHSIG, _end_signal(request), 0, 0, 0)
            if os.getppid() != self.pid:  # the zygote died before the prctl
                os._exit(1)
            os.close(ready)  # EOF: set up (a write would do, but the close is needed anyway)
            for target, fd in enumerate(fds[:3]):
                os.dup2(fd, target)
            for fd in fds[:3]:
                if fd > 2:
                    os.close(fd)
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            sys.argv = [self.argv0, *request["args"]]
            code = _run(self.entry)
        except BaseException:  # noqa: BLE001 - a child must end here, whatever happened
            traceback.print_exc()
        finally:
            os._exit(code)


def _end_signal(request: dict[str, Any]) -> int:
    """The signal a process gets when the zygote ends: SIGKILL, or what the request asked
    for (a FUSE daemon unmounts on SIGTERM)."""
    end = request.get("end_signal", signal.SIGKILL)
    return end if isinstance(end, int) and 0 < end < signal.NSIG else signal.SIGKILL


def _run(entry: Callable[[], Any]) -> int:
    """`entry()` as `python -m` runs a module whose `__main__` is `sys.exit(main())`: the
    exit status of SystemExit, 1 and a traceback for an exception, and stdout flushed."""
    try:
        raise SystemExit(entry())
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 - reported as the interpreter would
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 120  # the interpreter's status when flushing stdout fails
    return code


def main(argv: list[str]) -> int:
    sock = socket.socket(fileno=int(argv[0]))
    try:
        module = importlib.import_module(argv[1])
        for name in argv[2:]:
            importlib.import_module(name)
        entry = module.main
        argv0 = str(module.__file__)
    except BaseException as exc:  # noqa: BLE001 - told to the harness, which starts without us
        socket.send_fds(sock, [json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()],
                        [])
        return 1
    zygote = _Zygote(sock, entry, argv0)
    zygote._reply({"ready": True})
    return zygote.serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
