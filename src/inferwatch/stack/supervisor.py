"""Start, health-check and stop the stack's processes (through mirakuru's executors), each
tied to the runner's life (:mod:`inferwatch.stack.children`) and named in the pid file."""

from __future__ import annotations

import errno
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from mirakuru import Executor
from mirakuru.exceptions import AlreadyRunning, ProcessExitedWithError, TimeoutExpired

from inferwatch.stack.children import PidFile, spawn, with_lifeline
from inferwatch.stack.components import Component, Probe


class StackError(RuntimeError):
    """A component could not be started; the message says which and why."""


def _conflict(host: str, port: int, owner: str) -> str | None:
    """Why ``owner`` cannot listen on ``host:port`` (naming the flag to change), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                flag = f"--{owner.replace('_', '-')}-port"
                return (
                    f"port {port} on {host} is already in use; {owner.replace('_', ' ')} needs "
                    f"it (pick another with {flag})"
                )
            return f"cannot use {host}:{port} for {owner}: {exc.strerror}"
    return None


def ensure_ports_free(host: str, ports: Sequence[tuple[str, int]]) -> None:
    """Fail now, naming every port in the way and the flag that moves each (one message, so
    one retry fixes them all), rather than hang waiting for a health check that another
    program on that port might even answer."""
    problems = [found for owner, port in ports if (found := _conflict(host, port, owner))]
    if len(problems) == 1:
        raise StackError(problems[0])
    if problems:
        raise StackError(f"{len(problems)} ports are in the way:\n  " + "\n  ".join(problems))


def _tail(path: Path, lines: int = 15) -> str:
    try:
        with path.open(errors="replace") as f:
            return "".join(deque(f, maxlen=lines))
    except OSError:
        return ""


class _Executor(Executor):
    """mirakuru's executor, healthy once ``ready()`` says so, its child started differently
    in two ways:

    - ``start_new_session=True`` instead of mirakuru's ``preexec_fn=os.setsid``: the same
      new session and process group (which ``stop()`` signals), without running Python
      between fork and exec, which is unsafe in a process with threads;
    - forked by :func:`~inferwatch.stack.children.spawn`'s long-lived thread, since the
      child's PDEATHSIG fires when the thread that forked it exits.
    """

    def __init__(
        self, *args: Any, ready: Probe, on_spawn: Callable[[int], None], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._ready = ready
        self._on_spawn = on_spawn

    def pre_start_check(self) -> bool:
        # Something else answering where this component will serve; asked before forking
        # (start() below), since a component quick to start would otherwise be found so.
        return self.process is None and self._ready()

    def after_start_check(self) -> bool:
        return self._ready()

    @property
    def _popen_kwargs(self) -> dict[str, Any]:
        kwargs = super()._popen_kwargs
        kwargs.pop("preexec_fn", None)
        kwargs["start_new_session"] = True
        return kwargs

    def start(self) -> _Executor:
        if self.process is None:
            if self.pre_start_check():
                raise AlreadyRunning(self)
            # What mirakuru's SimpleExecutor.start would do, which then skips its own Popen.
            self.process = spawn(self.command_parts, **self._popen_kwargs)
            self._on_spawn(self.process.pid)
        super().start()
        return self


class Supervisor:
    """The running components, in start order. With ``pid_file`` each child is named there
    from the moment it is forked until it is stopped (:mod:`inferwatch.stack.children`)."""

    def __init__(
        self, log_dir: Path, startup_timeout: float, pid_file: PidFile | None = None
    ) -> None:
        self.log_dir = log_dir
        self.startup_timeout = startup_timeout
        self.pid_file = pid_file
        self._running: list[tuple[Component, _Executor, IO[bytes]]] = []

    def pid(self, name: str) -> int | None:
        for component, executor, _ in self._running:
            if component.name == name and executor.process is not None:
                return executor.process.pid
        return None

    def start(self, component: Component, position: int | None = None) -> float:
        """Start ``component`` and wait until its health URL answers 2xx; return the seconds
        it took. Raises :class:`StackError` with the end of its log when it does not.

        ``position``: where it goes in the stop order (a restarted component keeps its place,
        so the scraper is still stopped before the receivers); last when None."""
        if component.name in self.started():
            raise StackError(f"{component.name} is already running")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{component.name}.log"
        log = log_path.open("ab")
        command = list(component.command)
        if component.watch is not None and (pid := self.pid(component.watch)) is not None:
            command += ["--pid", str(pid)]
        executor = _Executor(
            with_lifeline(command, component.user),
            ready=component.ready,
            timeout=self.startup_timeout,
            stop_signal=component.stop_signal,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Named in the pid file as soon as it exists, so that a runner killed while this
            # one starts still leaves a record of it.
            on_spawn=lambda pid: self._write_pid_file((component.name, pid)),
        )
        began = time.monotonic()
        try:
            executor.start()
        except (TimeoutExpired, ProcessExitedWithError, AlreadyRunning) as exc:
            self._discard(executor, log)
            if isinstance(exc, TimeoutExpired):
                reason = f"not healthy within {self.startup_timeout:g} s"
            elif isinstance(exc, AlreadyRunning):
                reason = f"found {component.address} answering before it started"
            else:
                reason = "exited during start-up"
            raise StackError(
                f"{component.name} {reason}; end of {log_path}:\n{_tail(log_path)}"
            ) from None
        except BaseException:  # Ctrl-C while it starts: it must not outlive this call
            self._discard(executor, log)
            raise
        entry = (component, executor, log)
        if position is None:
            self._running.append(entry)
        else:
            self._running.insert(position, entry)
        self._write_pid_file()
        return time.monotonic() - began

    def _discard(self, executor: _Executor, log: IO[bytes]) -> None:
        executor.kill()
        log.close()
        self._write_pid_file()

    def _write_pid_file(self, starting: tuple[str, int] | None = None) -> None:
        if self.pid_file is None:
            return
        children = [
            (c.name, executor.process.pid)
            for c, executor, _ in self._running
            if executor.process is not None
        ]
        if starting is not None:
            children.append(starting)
        if children:
            self.pid_file.write(children)
        else:
            self.pid_file.remove()

    def started(self) -> list[str]:
        """Components started and not stopped since, in stop order reversed (alive or not)."""
        return [c.name for c, _, _ in self._running]

    def running(self) -> list[str]:
        return [c.name for c, executor, _ in self._running if executor.running()]

    def stop(self, name: str) -> None:
        """Stop one component (its stop signal, then SIGKILL), e.g. to see how the others
        cope."""
        for index, (component, executor, log) in enumerate(self._running):
            if component.name == name:
                del self._running[index]
                self._stop(component, executor, log)
                return
        raise StackError(f"{name} is not running")

    def stop_all(self) -> None:
        """Stop in reverse start order (the scraper first, the receivers last), each with its
        stop signal and SIGKILL only after the startup timeout, so Prometheus and
        Alertmanager flush their data."""
        while self._running:
            self._stop(*self._running.pop())

    def _stop(self, component: Component, executor: _Executor, log: IO[bytes]) -> None:
        """Stop one, and say in its log how it ended: the line to read when a component
        seems to have been killed rather than stopped."""
        process, began = executor.process, time.monotonic()
        try:
            executor.stop()
        except Exception:
            executor.kill()
        finally:
            code = process.poll() if process is not None else None
            took = time.monotonic() - began
            how = signal.Signals(component.stop_signal).name
            if code is None:
                ended = "did not exit"
            elif code == -component.stop_signal:
                # Not necessarily abrupt: uvicorn re-raises the signal after its graceful
                # shutdown, so that its parent sees why it ended.
                ended = f"exited on {how}"
            elif code < 0:
                ended = f"killed by {signal.Signals(-code).name}"
            else:
                ended = f"exit status {code}"
            log.write(f"[inferwatch stack] stopped with {how} in {took:.1f} s: {ended}\n".encode())
            log.close()
            self._write_pid_file()
