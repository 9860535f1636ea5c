"""The local stack runner (``inferwatch stack up``).

``Stack`` and ``StackError`` are loaded on first use: the runner needs mirakuru (the ``stack``
extra), while ``inferwatch.stack.prometheus_config`` and ``settings``, which rule generation
and reports import, need only the ``alerts`` extra. Importing a submodule runs this file, so
an eager import here would make every one of them require mirakuru.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from inferwatch.stack.settings import Ports, StackSettings

if TYPE_CHECKING:
    from inferwatch.stack.runner import Stack, StackError

__all__ = ["Ports", "Stack", "StackError", "StackSettings"]
_RUNNER = ("Stack", "StackError")


def __getattr__(name: str) -> Any:
    if name in _RUNNER:
        from inferwatch.stack import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
