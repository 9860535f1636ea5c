"""The local stack runner (``inferwatch stack up``)."""

from inferwatch.stack.runner import Stack, StackError
from inferwatch.stack.settings import Ports, StackSettings

__all__ = ["Ports", "Stack", "StackError", "StackSettings"]
