"""The local stack: demo service (or the user's), exporter, Prometheus, Alertmanager and the
notification receiver on one machine, without Docker."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from inferwatch.stack import configs
from inferwatch.stack.components import Component, components
from inferwatch.stack.settings import StackSettings
from inferwatch.stack.status import StackStatus, read_status
from inferwatch.stack.supervisor import StackError, Supervisor, ensure_port_free

Progress = Callable[[str], None]


class Stack:
    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.supervisor = Supervisor(settings.log_dir, settings.startup_timeout)
        self.components: list[Component] = []

    def prepare(self) -> None:
        """Check binaries and ports, write every config into the data directory. Nothing
        running yet, so any error here leaves the machine as it was."""
        self.components = components(self.settings)  # raises when a binary is missing
        for name, port in self.settings.ports.items():
            if name == "demo" and not self.settings.run_demo:
                continue
            ensure_port_free(self.settings.host, port, name)
        configs.write_all(self.settings)

    def start(self, progress: Progress = lambda _: None) -> None:
        self.prepare()
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
