"""Start, health-check and stop the stack's processes (through mirakuru's executors)."""

from __future__ import annotations

import errno
import socket
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import IO

from mirakuru import HTTPExecutor
from mirakuru.exceptions import ProcessExitedWithError, TimeoutExpired

from inferwatch.stack.components import Component


class StackError(RuntimeError):
    """A component could not be started; the message says which and why."""


def ensure_port_free(host: str, port: int, owner: str) -> None:
    """Fail now, with the flag to change, rather than hang waiting for a health check that
    another program on that port might even answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                flag = f"--{owner.replace('_', '-')}-port"
                raise StackError(
                    f"port {port} on {host} is already in use; {owner.replace('_', ' ')} needs "
                    f"it (pick another with {flag})"
                ) from None
            raise StackError(f"cannot use {host}:{port} for {owner}: {exc.strerror}") from None


def _tail(path: Path, lines: int = 15) -> str:
    try:
        with path.open(errors="replace") as f:
            return "".join(deque(f, maxlen=lines))
    except OSError:
        return ""


class Supervisor:
    def __init__(self, log_dir: Path, startup_timeout: float) -> None:
        self.log_dir = log_dir
        self.startup_timeout = startup_timeout
        self._running: list[tuple[Component, HTTPExecutor, IO[bytes]]] = []

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
        executor = HTTPExecutor(
            command,
            url=component.health_url,
            method="GET",
            status=r"^2\d\d$",
            timeout=self.startup_timeout,
            stdout=log,
            stderr=subprocess.STDOUT,
            envvars=dict(component.env) or None,  # on top of this process's environment
        )
        began = time.monotonic()
        try:
            executor.start()
        except (TimeoutExpired, ProcessExitedWithError) as exc:
            executor.kill()
            log.close()
            reason = (
                f"not healthy within {self.startup_timeout:g} s"
                if isinstance(exc, TimeoutExpired)
                else "exited during start-up"
            )
            raise StackError(
                f"{component.name} {reason}; end of {log_path}:\n{_tail(log_path)}"
            ) from None
        entry = (component, executor, log)
        if position is None:
            self._running.append(entry)
        else:
            self._running.insert(position, entry)
        return time.monotonic() - began

    def started(self) -> list[str]:
        """Components started and not stopped since, in stop order reversed (alive or not)."""
        return [c.name for c, _, _ in self._running]

    def running(self) -> list[str]:
        return [c.name for c, executor, _ in self._running if executor.running()]

    def stop(self, name: str) -> None:
        """Stop one component (SIGTERM, then SIGKILL), e.g. to see how the others cope."""
        for index, (component, executor, log) in enumerate(self._running):
            if component.name == name:
                del self._running[index]
                try:
                    executor.stop()
                except Exception:
                    executor.kill()
                finally:
                    log.close()
                return
        raise StackError(f"{name} is not running")

    def stop_all(self) -> None:
        """Stop in reverse start order (the scraper first, the receivers last), SIGTERM then
        SIGKILL, so Prometheus and Alertmanager flush their data."""
        while self._running:
            _, executor, log = self._running.pop()
            try:
                executor.stop()
            except Exception:
                executor.kill()
            finally:
                log.close()
