"""The local stack: demo service (or the user's), exporter, Prometheus, Alertmanager and the
notification receiver on one machine, without Docker."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from inferwatch.stack import configs
from inferwatch.stack.children import PidFile, previous_stack, terminate
from inferwatch.stack.components import Component, components
from inferwatch.stack.settings import StackSettings
from inferwatch.stack.status import StackStatus, read_status
from inferwatch.stack.supervisor import StackError, Supervisor, ensure_port_free

Progress = Callable[[str], None]
# How long the processes of a stale stack get to shut down (Prometheus flushing its head
# block) before they are killed.
STALE_STOP_TIMEOUT = 15.0


class Stack:
    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.pid_file = PidFile(settings.data_dir)
        self.supervisor = Supervisor(settings.log_dir, settings.startup_timeout, self.pid_file)
        self.components: list[Component] = []

    def prepare(self, progress: Progress = lambda _: None) -> None:
        """Check binaries, stop what a dead runner left in the data directory, check ports,
        write every config into the data directory. Nothing of this stack runs yet, so any
        error here leaves the machine as it was."""
        self.components = components(self.settings)  # raises when a binary is missing
        self._stop_stale(progress)
        for name, port in self.settings.ports.items():
            if name == "demo" and not self.settings.run_demo:
                continue
            ensure_port_free(self.settings.host, port, name)
        configs.write_all(self.settings)

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

    def status(self) -> StackStatus | None:
        return read_status(self.settings.url("prometheus"))

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
