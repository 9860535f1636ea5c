"""A circuit breaker: stop calling a dependency that keeps failing, and probe it now and then.

States: ``closed`` (calls go through; ``failure_threshold`` failures in a row open it),
``open`` (calls are refused at once with :class:`CircuitOpenError`, for ``reset_timeout``
seconds), ``half_open`` (one trial call at a time goes through: its success closes the
breaker, its failure opens it again for another ``reset_timeout``).

Why not pybreaker: its asynchronous calls need Tornado, and a breaker guarding an asyncio
HTTP client must neither block the event loop nor await while it holds its lock. This one
never awaits: the caller asks for a :class:`Permit` before a call and reports how the call
ended, from sync or async code alike, under one short ``threading.Lock``.

Listeners (``add_listener``) hear every transition with the time since the breaker first
opened when it closes again, which is how :class:`inferwatch.ai.Upstream` records state and
recovery time as metrics; a listener that raises is ignored.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"
STATES = (CLOSED, OPEN, HALF_OPEN)

# (old state, new state, seconds from first opening to closing again or None)
Listener = Callable[[str, str, float | None], None]


class CircuitOpenError(Exception):
    """The breaker refused the call: the dependency failed too often lately."""

    def __init__(self, peer: str, retry_after: float) -> None:
        super().__init__(f"circuit open for {peer!r}: not called for another {retry_after:.1f} s")
        self.peer = peer
        self.retry_after = retry_after


@dataclass(frozen=True)
class Permit:
    """Leave to make one call; ``trial`` when it is the half-open probe."""

    trial: bool


_PERMIT = Permit(trial=False)
_TRIAL = Permit(trial=True)


class CircuitBreaker:
    """Consecutive-failure breaker; thread-safe and never blocking (see the module text)."""

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        *,
        name: str = "dependency",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, got {failure_threshold!r}")
        if not (math.isfinite(reset_timeout) and reset_timeout > 0):
            raise ValueError(f"reset_timeout must be a finite number > 0, got {reset_timeout!r}")
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0  # consecutive, while closed
        self._opened_at = 0.0  # last time it opened (the reset timeout runs from here)
        self._outage_start = 0.0  # first opening since it was last closed
        self._trial = False  # a half-open probe is under way
        self._listeners: list[Listener] = []

    @property
    def state(self) -> str:
        with self._lock:
            events = self._expire(self._clock())
            state = self._state
        self._notify(events)
        return state

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def acquire(self) -> Permit:
        """A permit for one call, or :class:`CircuitOpenError` while the breaker is open (or
        half-open with its probe still under way)."""
        with self._lock:
            if self._state == CLOSED:  # the common case: no clock read, no allocation
                return _PERMIT
            now = self._clock()
            events = self._expire(now)
            permit = None
            if self._state == HALF_OPEN and not self._trial:
                self._trial = True
                permit = _TRIAL
            wait = max(0.0, self._opened_at + self.reset_timeout - now)
        self._notify(events)
        if permit is None:
            raise CircuitOpenError(self.name, wait)
        return permit

    def record(self, permit: Permit, failed: bool) -> None:
        """How the permitted call ended: ``failed`` when the dependency failed it."""
        events: list[tuple[str, str, float | None]] = []
        with self._lock:
            if permit.trial:
                self._trial = False
                if self._state == HALF_OPEN:
                    now = self._clock()
                    events.append(self._open(now) if failed else self._close(now))
            elif self._state == CLOSED:
                if not failed:
                    self._failures = 0
                    return
                self._failures += 1
                if self._failures >= self.failure_threshold:
                    now = self._clock()
                    self._outage_start = now
                    events.append(self._open(now))
        self._notify(events)

    def release(self, permit: Permit) -> None:
        """The permitted call ended without a verdict (cancelled): a probe may run again."""
        if permit.trial:
            with self._lock:
                self._trial = False

    # -- transitions, under the lock ------------------------------------------------------
    def _expire(self, now: float) -> list[tuple[str, str, float | None]]:
        if self._state == OPEN and now - self._opened_at >= self.reset_timeout:
            self._state = HALF_OPEN
            self._trial = False
            return [(OPEN, HALF_OPEN, None)]
        return []

    def _open(self, now: float) -> tuple[str, str, float | None]:
        old, self._state = self._state, OPEN
        self._opened_at = now
        self._failures = 0
        return (old, OPEN, None)

    def _close(self, now: float) -> tuple[str, str, float | None]:
        old, self._state = self._state, CLOSED
        self._failures = 0
        return (old, CLOSED, now - self._outage_start)

    def _notify(self, events: list[tuple[str, str, float | None]]) -> None:
        # Outside the lock: a listener taking locks of its own cannot deadlock with a call.
        for event in events:
            for listener in self._listeners:
                # A broken listener must not break the calls it watches.
                with contextlib.suppress(Exception):
                    listener(*event)
