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
