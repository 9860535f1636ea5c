"""Calls to the services a backend depends on (a TTS or LLM API, an embedding service): every
HTTP attempt timed, retries counted, the circuit breaker's state and recovery time recorded.

One :class:`Upstream` per dependency, named by the user (``peer``), never by URL: a URL
carries hosts, ports, paths and sometimes credentials, none of which may become a label.

Metrics (``peer`` is bounded; see docs/metrics.md):

- ``http_client_request_duration_seconds{peer, http_request_method,
  http_response_status_code, error_type}``: OpenTelemetry's ``http.client.request.duration``
  as Prometheus renders it, with the dependency's name in place of ``server.address`` and
  ``server.port`` (an address changes with every replica or failover, a name does not). One
  observation per attempt, up to the response's headers (as OTel's httpx instrumentation
  times it). ``http_request_method`` is one of OTel's known methods or ``_OTHER``;
  ``http_response_status_code`` is empty when no response came; ``error_type`` is the status
  code for a 4xx/5xx answer, the exception's qualified class name (``httpx.ConnectError``)
  when the attempt raised, empty for a success.
- ``inferwatch_upstream_calls_total{peer, outcome}``: logical calls through
  :meth:`Upstream.retrying`, by how they ended: ``success`` (first attempt), ``recovered``
  (a retry succeeded), ``failed`` (the dependency failed every attempt made), ``rejected``
  (the breaker refused the first attempt: the dependency was not called), ``client_error``
  (a 4xx answer: the caller's mistake, not the dependency's) and ``cancelled``. The retry
  recovery rate is ``recovered / (recovered + failed)``: the share of calls whose first
  attempt failed that a retry saved.
- ``inferwatch_upstream_retries_total{peer, error_type}``: retries scheduled, by what the
  attempt before them ended with (as ``error_type`` above; ``result`` for a retry on the
  returned value).
- ``inferwatch_upstream_circuit_state{peer, state}``: breakers of the peer in each state
  (closed, open, half_open); 1 or 0 per process, summed over live workers.
- ``inferwatch_upstream_circuit_transitions_total{peer, state}``: transitions into a state.
- ``inferwatch_upstream_circuit_recovery_seconds{peer}``: time from a breaker opening to it
  closing again (the outage as the client saw it; its mean is an MTTR).

Retries use tenacity (the ``upstream`` extra), with inferwatch's hooks chained before the
user's. Every bookkeeping step is guarded: an error in it is counted in
``inferwatch_instrumentation_errors_total`` and never fails the call.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from prometheus_client.registry import REGISTRY, CollectorRegistry

from inferwatch.ai import buckets
from inferwatch.ai._shared import Span, state_for
from inferwatch.ai.breaker import (
    CLOSED,
    STATES,
    CircuitBreaker,
    CircuitOpenError,
    Permit,
)
from inferwatch.http.middleware import KNOWN_METHODS, error_type
from inferwatch.metrics import Counter, Gauge, Histogram
from inferwatch.metrics.buckets import DURATION_SECONDS
from inferwatch.metrics.labels import OTHER, error_types

F = TypeVar("F", bound=Callable[..., Any])

SUCCESS = "success"
RECOVERED = "recovered"
FAILED = "failed"
REJECTED = "rejected"
CLIENT_ERROR = "client_error"
CANCELLED = "cancelled"
CALL_OUTCOMES = (SUCCESS, RECOVERED, FAILED, REJECTED, CLIENT_ERROR, CANCELLED)
RESULT = "result"  # error_type of a retry asked for by the returned value

# Answers worth another attempt: the dependency is overloaded, restarting or timed out.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
DEFAULT_ATTEMPTS = 3
DEFAULT_MAX_PEERS = 32
_STATUS_LABELS = {code: str(code) for code in range(100, 600)}


class UpstreamSet:
    """The dependency-call metrics of one registry."""

    def __init__(
        self, registry: CollectorRegistry | None, duration_buckets: Sequence[float]
    ) -> None:
        r = registry
        self.duration = Histogram(
            "http_client_request_duration_seconds",
            "Duration of HTTP requests to a dependency, one per attempt, up to the response "
            "headers. peer names the dependency; error_type is the 4xx/5xx status or the "
            "exception class of a failed attempt, empty for a success.",
            ("peer", "http_request_method", "http_response_status_code", "error_type"),
            buckets=duration_buckets, registry=r, unit="seconds",
        )  # fmt: skip
        self.calls = Counter(
            "inferwatch_upstream_calls_total",
            "Calls to a dependency through its retry policy, by outcome (success, recovered "
            "by a retry, failed, rejected by the open circuit, client_error, cancelled).",
            ("peer", "outcome"), registry=r,
        )  # fmt: skip
        self.retries = Counter(
            "inferwatch_upstream_retries_total",
            "Retries of calls to a dependency, by what the attempt before ended with "
            "(status code, exception class, or result).",
            ("peer", "error_type"), registry=r,
        )  # fmt: skip
        self.circuit_state = Gauge(
            "inferwatch_upstream_circuit_state",
            "Circuit breakers of a dependency in each state (closed, open, half_open); "
            "summed over worker processes.",
            ("peer", "state"), registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.circuit_transitions = Counter(
            "inferwatch_upstream_circuit_transitions_total",
            "Circuit breaker transitions of a dependency, by the state entered.",
            ("peer", "state"), registry=r,
        )  # fmt: skip
        self.circuit_recovery = Histogram(
            "inferwatch_upstream_circuit_recovery_seconds",
            "Time from a dependency's circuit breaker opening to it closing again.",
            ("peer",), buckets=buckets.CIRCUIT_RECOVERY_SECONDS, registry=r, unit="seconds",
        )  # fmt: skip


def upstream_set(
    registry: CollectorRegistry | None, duration_buckets: Sequence[float] = DURATION_SECONDS
) -> UpstreamSet:
    """The registry's one set of dependency-call metrics, created on first use."""
    return state_for(registry).metric_set(
        "upstream", tuple(duration_buckets), lambda r: UpstreamSet(r, duration_buckets)
    )


# --- what failed, and whether to try again -------------------------------------------------------


def _status_of(exc: BaseException) -> int | None:
    """The status of an ``httpx.HTTPStatusError`` (or anything carrying a response)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def failure_type(exc: BaseException) -> str:
    """``error_type`` of a failed attempt: its status code when it was an HTTP answer, else
    the exception's qualified class name."""
    status = _status_of(exc)
    return _STATUS_LABELS.get(status, OTHER) if status is not None else error_type(exc)


def is_dependency_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says the dependency failed (counts towards opening its breaker): any
    exception but a 4xx answer other than 408/425/429, and but a refusal by the breaker."""
    if isinstance(exc, CircuitOpenError) or not isinstance(exc, Exception):
        return False
    status = _status_of(exc)
    return status is None or status >= 500 or status in RETRY_STATUSES


def is_transient(exc: BaseException) -> bool:
    """The default retry predicate: network errors, timeouts and :data:`RETRY_STATUSES`
    answers; never a refusal by the breaker (retrying it at once cannot succeed)."""
    if isinstance(exc, CircuitOpenError):
        return False
    status = _status_of(exc)
    if status is not None:
        return status in RETRY_STATUSES
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx comes with the upstream extra
        return False
    return isinstance(exc, httpx.TransportError)


# --- the facade ----------------------------------------------------------------------------------


class Upstream:
    """Instrumentation for one dependency: ``peer`` is its name in every label.

    ``breaker``: a :class:`~inferwatch.ai.CircuitBreaker` guarding every attempt (the
    default: 5 failures in a row open it for 30 s), or None for none. Create one Upstream
    per dependency and keep it for the life of the process: the breaker is its state.
    """

    def __init__(
        self,
        peer: str,
        registry: CollectorRegistry | None = REGISTRY,
        *,
        breaker: CircuitBreaker | bool | None = True,
        max_peers: int | None = None,
        duration_buckets: Sequence[float] = DURATION_SECONDS,
        is_failure: Callable[[BaseException], bool] = is_dependency_failure,
    ) -> None:
        self._state = state = state_for(registry)
        self._metrics = upstream_set(registry, duration_buckets)
        self.peer = state.bound("peer", None, max_peers, DEFAULT_MAX_PEERS)(peer)
        self._error_types = error_types(registry, "upstream")
        self._is_failure = is_failure
        if breaker is True:
            breaker = CircuitBreaker(name=peer)
        self.breaker: CircuitBreaker | None = breaker or None
        if self.breaker is not None:
            self._watch(self.breaker)

    # -- HTTP clients -------------------------------------------------------------------------
    def transport(self, inner: Any = None) -> Any:
        """An httpx transport timing each request and guarding it with the breaker:
        ``httpx.Client(transport=tts.transport())``; ``inner`` defaults to
        ``httpx.HTTPTransport()``."""
        if inner is None:
            import httpx

            inner = httpx.HTTPTransport()
        return InstrumentedTransport(self, inner)

    def async_transport(self, inner: Any = None) -> Any:
        """The same for ``httpx.AsyncClient`` (``inner`` defaults to
        ``httpx.AsyncHTTPTransport()``)."""
        if inner is None:
            import httpx

            inner = httpx.AsyncHTTPTransport()
        return AsyncInstrumentedTransport(self, inner)

    # -- other clients (Redis, gRPC, an SDK) ------------------------------------------------------
    def protect(self) -> Protected:
        """``with``/``async with tts.protect(): ...`` guards one call by any client with the
        breaker (CircuitOpenError when open); an exception ``is_failure`` accepts counts
        against the dependency."""
        return Protected(self)

    # -- retries -------------------------------------------------------------------------------
    def retrying(self, fn: F | None = None, /, **options: Any) -> Any:
        """Decorator retrying a sync or async function with tenacity, counting each call by
        outcome and each retry by cause. ``options`` go to ``tenacity.Retrying`` /
        ``AsyncRetrying`` and replace the defaults: 3 attempts, exponential backoff with
        jitter from 0.1 s to 2 s, retry on :func:`is_transient`, reraise the last error.
        A ``before_sleep`` or ``retry_error_callback`` of the caller runs after inferwatch's."""
        import tenacity

        settings: dict[str, Any] = {
            "stop": tenacity.stop_after_attempt(DEFAULT_ATTEMPTS),
            "wait": tenacity.wait_exponential(multiplier=0.1, max=2.0)
            + tenacity.wait_random(0, 0.1),
            "retry": tenacity.retry_if_exception(is_transient),
            "reraise": True,
            **options,
        }
        user_sleep = settings.pop("before_sleep", None)
        user_gave_up = settings.pop("retry_error_callback", None)

        def decorate(fn: F) -> F:
            is_async = inspect.iscoroutinefunction(fn)
            retrier = (tenacity.AsyncRetrying if is_async else tenacity.Retrying)(**settings)
            if is_async:

                @functools.wraps(fn)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    call = _Call(self, user_sleep, user_gave_up, is_async=True)
                    try:
                        result = await retrier.copy(**call.hooks())(call.wrap(fn), *args, **kwargs)
                    except BaseException as exc:
                        call.finish(exc)
                        raise
                    call.finish(None)
                    return result

                return cast(F, async_wrapper)

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                call = _Call(self, user_sleep, user_gave_up, is_async=False)
                try:
                    result: Any = retrier.copy(**call.hooks())(call.wrap(fn), *args, **kwargs)
                except BaseException as exc:
                    call.finish(exc)
                    raise
                call.finish(None)
                return result

            return cast(F, wrapper)

        return decorate(fn) if fn is not None else decorate

    # -- bookkeeping ------------------------------------------------------------------------------
    def _watch(self, breaker: CircuitBreaker) -> None:
        m, peer = self._metrics, self.peer
        children = {s: m.circuit_state.labels(peer, s) for s in STATES}
        for s in STATES:  # every state present from the start: 1 closed, 0 the others
            m.circuit_transitions.labels(peer, s)
        children[CLOSED].inc()
        current = [CLOSED]

        def moved(old: str, new: str, outage: float | None) -> None:
            try:
                children[old].dec()
                children[new].inc()
                current[0] = new
                m.circuit_transitions.labels(peer, new).inc()
                if outage is not None:
                    m.circuit_recovery.labels(peer).observe(outage)
            except Exception as exc:
                self._state.error("ai.upstream.circuit", exc)

        breaker.add_listener(moved)
        # A breaker that is gone is in no state any more (a facade made for one request).
        weakref.finalize(self, _forget, children, current)

    def admit(self) -> Permit | None:
        """A breaker permit for one attempt (None without a breaker); raises
        CircuitOpenError while open. Never fails for any other reason."""
        if self.breaker is None:
            return None
        try:
            return self.breaker.acquire()
        except CircuitOpenError:
            raise
        except Exception as exc:
            self._state.error("ai.upstream.circuit", exc)
            return None

    def settle(self, permit: Permit | None, failed: bool | None) -> None:
        """Report an attempt's end to the breaker (``failed`` None: no verdict)."""
        if permit is None or self.breaker is None:
            return
        try:
            if failed is None:
                self.breaker.release(permit)
            else:
                self.breaker.record(permit, failed)
        except Exception as exc:
            self._state.error("ai.upstream.circuit", exc)

    def attempted(
        self,
        permit: Permit | None,
        method: str,
        seconds: float,
        status: int | None,
        exc: BaseException | None,
    ) -> None:
        """Record one HTTP attempt: its duration, and its verdict for the breaker."""
        try:
            if exc is not None:
                failure, code = self._error_types(error_type(exc)), ""
                verdict: bool | None = self._is_failure(exc) if isinstance(exc, Exception) else None
            else:
                code = _STATUS_LABELS.get(status, OTHER) if status is not None else ""
                failure = code if status is not None and status >= 400 else ""
                verdict = status is not None and (status >= 500 or status == 429)
            label = method if method in KNOWN_METHODS else OTHER
            self._metrics.duration.labels(self.peer, label, code, failure).observe(seconds)
        except Exception as err:
            self._state.error("ai.upstream.request", err)
            verdict = None
        self.settle(permit, verdict)

    def _error_label(self, exc: BaseException) -> str:
        return self._error_types(failure_type(exc))


def _forget(children: dict[str, Any], current: list[str]) -> None:
    with contextlib.suppress(Exception):  # interpreter shutdown: nothing left to report to
        children[current[0]].dec()


# --- HTTP transports -----------------------------------------------------------------------------


class InstrumentedTransport:
    """An httpx transport around ``inner``: the breaker's permit first, then the request,
    timed to its response headers. Duck-typed, so that importing it needs no httpx."""

    def __init__(self, upstream: Upstream, inner: Any) -> None:
        self._upstream = upstream
        self._inner = inner

    def handle_request(self, request: Any) -> Any:
        up = self._upstream
        permit = up.admit()
        start = time.perf_counter()
        try:
            response = self._inner.handle_request(request)
        except BaseException as exc:
            up.attempted(permit, request.method, time.perf_counter() - start, None, exc)
            raise
        up.attempted(
            permit, request.method, time.perf_counter() - start, response.status_code, None
        )
        return response

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> InstrumentedTransport:
        self._inner.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._inner.__exit__(*exc_info)


class AsyncInstrumentedTransport:
    """:class:`InstrumentedTransport` for ``httpx.AsyncClient``."""

    def __init__(self, upstream: Upstream, inner: Any) -> None:
        self._upstream = upstream
        self._inner = inner

    async def handle_async_request(self, request: Any) -> Any:
        up = self._upstream
        permit = up.admit()
        start = time.perf_counter()
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException as exc:
            up.attempted(permit, request.method, time.perf_counter() - start, None, exc)
            raise
        up.attempted(
            permit, request.method, time.perf_counter() - start, response.status_code, None
        )
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> AsyncInstrumentedTransport:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._inner.__aexit__(*exc_info)


# --- a guarded call by any client ----------------------------------------------------------------


class Protected(Span):
    """One call guarded by the dependency's breaker (see :meth:`Upstream.protect`)."""

    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream
        self._permit: Permit | None = None

    def _begin(self) -> None:
        self._permit = self._upstream.admit()  # CircuitOpenError is the point: it propagates

    def _end(self, exc: BaseException | None) -> None:
        up = self._upstream
        if exc is None:
            verdict: bool | None = False
        elif isinstance(exc, Exception):
            verdict = up._is_failure(exc)
        else:
            verdict = None  # cancelled or interrupted: says nothing about the dependency
        up.settle(self._permit, verdict)


# --- one logical call through the retry policy ---------------------------------------------------


class _Call:
    """Counts the attempts of one call and its outcome; its hooks run inside tenacity."""

    def __init__(
        self,
        upstream: Upstream,
        user_sleep: Callable[..., Any] | None,
        user_gave_up: Callable[..., Any] | None,
        *,
        is_async: bool,
    ) -> None:
        self._up = upstream
        self._user_sleep = user_sleep
        self._user_gave_up = user_gave_up
        self._is_async = is_async
        self.attempts = 0
        self.first_error: BaseException | None = None
        self.last_error: BaseException | None = None
        self.gave_up = False

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(fn):

            async def async_attempt(*args: Any, **kwargs: Any) -> Any:
                self.attempts += 1
                try:
                    return await fn(*args, **kwargs)
                except BaseException as exc:
                    self._first(exc)
                    raise

            return async_attempt

        def attempt(*args: Any, **kwargs: Any) -> Any:
            self.attempts += 1
            try:
                return fn(*args, **kwargs)
            except BaseException as exc:
                self._first(exc)
                raise

        return attempt

    def _first(self, exc: BaseException) -> None:
        if self.attempts == 1:
            self.first_error = exc
        self.last_error = exc

    def hooks(self) -> dict[str, Any]:
        hooks: dict[str, Any] = {"before_sleep": self._chain(self._retried, self._user_sleep)}
        if self._user_gave_up is not None:
            hooks["retry_error_callback"] = self._chain(self._gave_up, self._user_gave_up)
        return hooks

    def _chain(self, ours: Callable[[Any], None], theirs: Callable[..., Any] | None) -> Any:
        if self._is_async:

            async def async_hook(retry_state: Any) -> Any:
                ours(retry_state)
                result = theirs(retry_state) if theirs is not None else None
                return await result if inspect.isawaitable(result) else result

            return async_hook

        def hook(retry_state: Any) -> Any:
            ours(retry_state)
            return theirs(retry_state) if theirs is not None else None

        return hook

    def _retried(self, retry_state: Any) -> None:
        try:
            outcome = retry_state.outcome
            exc = outcome.exception() if outcome is not None and outcome.failed else None
            cause = self._up._error_label(exc) if exc is not None else RESULT
            self._up._metrics.retries.labels(self._up.peer, cause).inc()
        except Exception as err:
            self._up._state.error("ai.upstream.retry", err)

    def _gave_up(self, retry_state: Any) -> None:
        self.gave_up = True

    def finish(self, exc: BaseException | None) -> None:
        try:
            self._up._metrics.calls.labels(self._up.peer, self._outcome(exc)).inc()
        except Exception as err:
            self._up._state.error("ai.upstream.call", err)

    def _outcome(self, exc: BaseException | None) -> str:
        if exc is None and not self.gave_up:
            return SUCCESS if self.attempts <= 1 else RECOVERED
        if exc is not None and not isinstance(exc, Exception):
            return CANCELLED
        if self.attempts <= 1 and isinstance(self.first_error, CircuitOpenError):
            return REJECTED
        last = self.last_error if self.last_error is not None else exc
        judged = last is not None and not isinstance(last, CircuitOpenError)
        if judged and not self._up._is_failure(last):  # type: ignore[arg-type]
            return CLIENT_ERROR
        return FAILED
