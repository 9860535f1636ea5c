"""The outcome of a request, and how an exception maps to one."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Mapping

SUCCESS = "success"
CLIENT_ERROR = "client_error"
SERVER_ERROR = "server_error"
TIMEOUT = "timeout"
CANCELLED = "cancelled"
REJECTED = "rejected"
OOM = "oom"
OUTCOMES = frozenset({SUCCESS, CLIENT_ERROR, SERVER_ERROR, TIMEOUT, CANCELLED, REJECTED, OOM})

# A user hook: a callable returning an outcome (or None for "use the default rules"), or a
# mapping from exception types to outcomes, matched along the exception's class hierarchy.
OutcomeHook = Callable[[BaseException], str | None] | Mapping[type[BaseException], str]

# Distinct classes before Python 3.11; the same class after.
_CANCELLED = (asyncio.CancelledError, concurrent.futures.CancelledError)
_TIMEOUT = (TimeoutError, asyncio.TimeoutError, concurrent.futures.TimeoutError)


def validate_hook(hook: OutcomeHook | None) -> OutcomeHook | None:
    """Reject a mapping with unknown outcomes at setup, where a mistake should fail loudly."""
    if isinstance(hook, Mapping):
        bad = {k: v for k, v in hook.items() if v not in OUTCOMES}
        if bad:
            raise ValueError(f"unknown outcomes {bad!r}; use one of {sorted(OUTCOMES)}")
    elif hook is not None and not callable(hook):
        raise TypeError("the outcome hook must be a callable or a mapping of exception types")
    return hook


def classify(exc: BaseException | None, hook: OutcomeHook | None = None) -> str:
    """The outcome for a request that ended with ``exc`` (None: it returned normally)."""
    if exc is None:
        return SUCCESS
    if hook is not None:
        outcome = _from_hook(exc, hook)
        if outcome is not None:
            return outcome
    if isinstance(exc, _CANCELLED):
        return CANCELLED
    if not isinstance(exc, Exception):
        # GeneratorExit (a stream closed by its consumer), KeyboardInterrupt, SystemExit: the
        # work was interrupted, not failed.
        return CANCELLED
    if isinstance(exc, _TIMEOUT):
        return TIMEOUT
    if is_oom(exc):
        return OOM
    status = getattr(exc, "status_code", None)  # HTTPException and friends
    if isinstance(status, int):
        if status == 429:
            return REJECTED
        if 400 <= status < 500:
            return CLIENT_ERROR
    return SERVER_ERROR


def is_oom(exc: BaseException) -> bool:
    """MemoryError, torch.cuda.OutOfMemoryError and the like (matched by class name so that
    no framework needs importing), or the RuntimeError older PyTorch raised for it."""
    if isinstance(exc, MemoryError):
        return True
    if any("OutOfMemory" in cls.__name__ for cls in type(exc).__mro__):
        return True
    return type(exc) is RuntimeError and "out of memory" in str(exc)


def _from_hook(exc: BaseException, hook: OutcomeHook) -> str | None:
    try:
        if isinstance(hook, Mapping):
            for cls in type(exc).__mro__:
                if cls in hook:
                    return hook[cls]
            return None
        outcome = hook(exc)
    except Exception:  # a broken hook must not turn a user error into ours
        return None
    return outcome if outcome in OUTCOMES else None
