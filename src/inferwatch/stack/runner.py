"""The local stack: demo service (or the user's), exporter, Prometheus, Alertmanager and the
notification receiver on one machine, without Docker."""

from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import Callable
from types import TracebackType

from inferwatch.stack import configs
from inferwatch.stack.backends import OwnBackend, own_backends
from inferwatch.stack.children import PidFile, previous_stack, terminate
from inferwatch.stack.components import Component, components, exporter_collectors
from inferwatch.stack.ha import HAStatus, read_ha_parts
from inferwatch.stack.settings import BACKENDS, StackSettings
from inferwatch.stack.status import StackStatus, read_status
from inferwatch.stack.supervisor import StackError, Supervisor, ensure_ports_free

Progress = Callable[[str], None]
# How long the processes of a stale stack get to shut down (Prometheus flushing its head
# block) before they are killed.
STALE_STOP_TIMEOUT = 15.0


class Stack:
    """The stack of ``settings``. Once :meth:`prepare` has run, :attr:`settings` holds the
    URLs of the backends the stack runs itself (:attr:`backends`), as its clients see them."""

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.pid_file = PidFile(settings.data_dir)
        self.supervisor = Supervisor(settings.log_dir, settings.startup_timeout, self.pid_file)
        self.components: list[Component] = []
        self.backends: list[OwnBackend] = []
        self._reported_backends: list[str] = []

    def prepare(self, progress: Progress = lambda _: None) -> None:
        """Check binaries, stop what a dead runner left in the data directory, check ports,
        write every config into the data directory (and initialise the own PostgreSQL's on
        the first start). Nothing of this stack runs yet, so any error here leaves no
        process behind."""
        if not self.backends:  # ports and passwords of the own backends, settled once
            self.backends = own_backends(self.settings)
            urls = {f"{b.name}_url": b.url for b in self.backends}
            self.settings = dataclasses.replace(self.settings, **urls)
        # Raises when a binary is missing.
        self.components = components(self.settings, [b.component for b in self.backends])
        collectors = exporter_collectors(self.settings)  # looks for NVML: once, not per status
        self._reported_backends = [name for name in BACKENDS if name in collectors]
        self._stop_stale(progress)
        skip = set() if self.settings.run_demo else {"demo"}
        ensure_ports_free(
            self.settings.host,
            [(n, p) for n, p in self.settings.all_ports() if n not in skip],
        )
        configs.write_all(self.settings)
        for backend in self.backends:
            backend.prepare(progress)

    def _stop_stale(self, progress: Progress) -> None:
        previous = previous_stack(self.pid_file)
        if previous.runner is not None:
            raise StackError(
                f"a stack already runs from {self.settings.data_dir} (pid "
                f"{previous.runner.pid}); stop it, or give this one another --data-dir"
            )
        stopped = terminate(previous.survivors, STALE_STOP_TIMEOUT)
        if stopped:
            names = ", ".join(f"{r.name} (pid {r.pid})" for r in stopped)
            progress(f"stopped what a dead stack left running in {self.settings.data_dir}: {names}")
        self.pid_file.remove()

    def start(self, progress: Progress = lambda _: None) -> None:
        self.prepare(progress)
        total = len(self.components)
        try:
            for index, component in enumerate(self.components, 1):
                progress(f"[{index}/{total}] starting {component.description} ...")
                seconds = self.supervisor.start(component)
                progress(f"[{index}/{total}] {component.name} healthy after {seconds:.1f} s")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.supervisor.stop_all()

    def stop_component(self, name: str) -> None:
        """Stop one running component (``exporter``, ``alertmanager``, ...) and leave the
        others running: how a failure of that one process looks to the rest of the stack."""
        self.supervisor.stop(name)

    def start_component(self, name: str) -> float:
        """Start a component stopped with :meth:`stop_component` again, with the command it
        first had (the exporter watches the demo's current pid); the seconds it took."""
        order = [c.name for c in self.components]
        if name not in order:
            raise StackError(f"no component {name!r}; the stack has {', '.join(order)}")
        started = set(self.supervisor.started())
        # Its place in start order among the others, so stop() still stops in reverse.
        position = sum(1 for other in order[: order.index(name)] if other in started)
        return self.supervisor.start(self.components[order.index(name)], position)

    def kill_component(self, name: str) -> None:
        """SIGKILL one running component, as a crash or the OOM killer would end it: no
        shutdown of its own (Prometheus flushes nothing, an Alertmanager leaves its cluster
        without a word). :meth:`start_component` starts it again."""
        pid = self.supervisor.pid(name)
        if pid is None:
            raise StackError(f"{name} is not running")
        os.kill(pid, signal.SIGKILL)
        self.supervisor.stop(name)  # reaps it and records in its log how it ended

    def status(self) -> StackStatus | None:
        """How the stack looks from Prometheus, with the backends whose reachability the
        exporter reports (None while no Prometheus answers). In HA, from the first replica
        that answers, with every replica, Alertmanager and the long-term store named."""
        found = None
        for replica in self._prometheus_urls():
            found = read_status(replica, self._reported_backends)
            if found is not None:
                break
        if found is None or not self.settings.ha:
            return found
        return HAStatus.of(found, read_ha_parts(self.settings))

    def _prometheus_urls(self) -> list[str]:
        urls = [self.settings.url("prometheus")]
        return [*urls, self.settings.url("prometheus_2")] if self.settings.ha else urls

    def urls(self) -> list[tuple[str, str]]:
        return [(c.description, c.ui_url) for c in self.components]

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


__all__ = ["Stack", "StackError", "StackSettings"]
