"""Pure ASGI middleware recording HTTP and WebSocket metrics.

Hot-path rules, because this runs on every request of a service that may serve thousands
per second: per-request state lives in one slotted object per request (never on ``self``,
which every concurrent request shares), whose bound methods are the ``receive`` and
``send`` the application gets; metric children are looked up once per (method, route,
status, error type) and cached, and a success finds them again by (route object, method,
status) in one lookup; the clock is read twice per request, a third time only when the
loop turned after the response; and every line of bookkeeping is guarded so that a bug
here can never fail the user's request.

How a request ends, as recorded:

- The response is complete when its final body message is handed to the server; that is
  when the request stops being in flight, its duration ends and it is counted, not when
  the application returns. Work the application does afterwards (background tasks,
  dependency teardown) is timed separately, and an exception it raises then is counted in
  ``http_server_exceptions_total`` without failing a request that was answered in full.
  Only work that let the event loop run and lasted ``BACKGROUND_FLOOR`` or more counts as
  background work, so a route that has none gets no background series at all.
- A client that leaves first is recorded as 499. ASGI servers at spec 2.3, uvicorn among
  them, neither cancel the application nor fail its ``send()`` when the client goes: the
  response is written into the void and would look like a success. A departure shows only
  as an ``http.disconnect`` from ``receive()``, which the application may read (Starlette's
  streaming responses do) or not; so the middleware also asks the server, without waiting,
  just before the final body message: ``receive()`` answers ``http.disconnect`` at once
  when the connection is gone, and would wait otherwise. (After the final message it
  answers ``http.disconnect`` in any case, which is why the question comes before.) Asking
  costs about 2 µs, a third of all the middleware costs a request, so a response ready
  within ``DEPARTURE_CHECK_AFTER`` is not asked about: clients rarely leave that soon.
- ``error_type`` follows OpenTelemetry's ``error.type``: the exception's class when one
  ended the request (also after the response started: a stream that fails halfway has sent
  a 200 status line), the status code for 5xx responses and for 499, empty for successes.
  Successful requests therefore keep one series per (method, route, status).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from inferwatch.http.instruments import HttpMetrics
from inferwatch.http.routes import RouteTemplates
from inferwatch.metrics import CounterChild, GaugeChild, HistogramChild
from inferwatch.metrics.labels import MAX_ERROR_TYPES as DEFAULT_MAX_ERROR_TYPES
from inferwatch.metrics.labels import OTHER, error_types
from inferwatch.metrics.shared import report_error

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]

# OTel's list of known methods; anything else is user input and collapses into _OTHER.
KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"}
)
CLIENT_CLOSED = 499  # nginx's code for "client went away before the response"
DEPARTURE_CHECK_AFTER = 0.05  # seconds; quicker responses are not checked for a departure
# Work after the response shorter than this is the framework unwinding (a streaming
# response's task group, a BaseHTTPMiddleware's), not background work worth a series.
BACKGROUND_FLOOR = 0.005  # seconds
_STATUS_LABELS = {code: str(code) for code in range(100, 600)}
MAX_ERROR_TYPES = DEFAULT_MAX_ERROR_TYPES  # a module global, so a test can lower it
_STANDARD_CLOSE_CODES = frozenset(range(1000, 1016))

log = logging.getLogger("inferwatch.http")


@dataclass(frozen=True)
class HttpSettings:
    exclude_paths: frozenset[str]
    exemplar: Callable[[], dict[str, str] | None] | None = None
    body_sizes: bool = False  # opt-in: the body-size histograms


class _RouteChildren:
    """The children one (method, route, status, error type) writes, resolved once.

    Only the request duration is created eagerly: it is written by every request. The
    others exist only where a request needed them (a streamed body, work after the
    response), since an empty histogram still costs its buckets' series on every scrape.
    """

    __slots__ = ("_background", "_labels", "_ttfb", "duration", "family", "lock",
                 "request_size", "response_size")  # fmt: skip

    def __init__(
        self, m: HttpMetrics, method: str, route: str, status: str, failure: str, sizes: bool
    ) -> None:
        self.duration = m.request_duration.labels(method, route, status, failure)
        self.request_size: Any = None
        self.response_size: Any = None
        if sizes and m.request_body_size is not None and m.response_body_size is not None:
            self.request_size = m.request_body_size.labels(method, route, status)
            self.response_size = m.response_body_size.labels(method, route, status)
        # In multiprocess mode the children are prometheus_client's, which lock themselves.
        self.lock = m.request_lock if isinstance(self.duration, HistogramChild) else None
        self.family = m
        self._labels = (method, route)
        self._ttfb: Any = None
        self._background: Any = None

    def ttfb(self) -> Any:
        if self._ttfb is None:
            self._ttfb = self.family.time_to_first_byte.labels(*self._labels)
        return self._ttfb

    def background(self) -> Any:
        if self._background is None:
            self._background = self.family.background_duration.labels(*self._labels)
        return self._background

    def record(self, duration: float | None, received: float, sent: float) -> None:
        request_size = self.request_size
        if request_size is None:
            if duration is not None:
                self.duration.observe(duration)
            return
        if self.lock is None:
            if duration is not None:
                self.duration.observe(duration)
            request_size.observe(received)
            self.response_size.observe(sent)
            return
        # acquire/try/finally costs half of `with lock:` (try is free on 3.11+)
        self.lock.acquire()
        try:
            if duration is not None:
                self.duration.observe_unlocked(duration)
            request_size.observe_unlocked(received)
            self.response_size.observe_unlocked(sent)
        finally:
            self.lock.release()


class LoopTurns:
    """Tells whether the event loop has turned since a point in time, for a call_soon
    per loop turn rather than per request.

    ``mark()`` returns a number and makes sure a callback is queued that moves the number
    on. Callbacks run in the order they were queued, and a coroutine that suspends is
    resumed by a callback queued after that one, so: if the number differs from the mark
    when a coroutine looks again, the coroutine has let the loop run (awaited something
    that waited) in between; if it does not, it ran straight through. Requests finishing in
    the same turn share one callback. Outside asyncio (trio) ``mark()`` returns None.
    """

    __slots__ = ("_queued_on", "turns")

    def __init__(self) -> None:
        self.turns = 0
        self._queued_on: asyncio.AbstractEventLoop | None = None

    def mark(self) -> int | None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        if self._queued_on is not loop:  # none queued, or on another loop (a test client's)
            self._queued_on = loop
            loop.call_soon(self._turned)
        return self.turns

    def _turned(self) -> None:
        self.turns += 1
        self._queued_on = None


def error_type(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def close_code_label(code: Any, *, from_client: bool) -> str:
    """Bound close codes: standard ones as-is; the application's own 4xxx codes as-is when
    the server sent them; anything a client chose collapses into a range."""
    if not isinstance(code, int):
        return OTHER
    if code in _STANDARD_CLOSE_CODES or (not from_client and 4000 <= code <= 4999):
        return str(code)
    if 3000 <= code <= 4999:
        return f"{code // 1000}xxx"
    return OTHER


def client_gone(receive: Receive) -> bool:
    """Whether the server already holds an ``http.disconnect`` for this request, found out
    without waiting: ``receive()`` runs up to the point where it would wait, and is closed
    there, as a coroutine that is never resumed is (its waiter removed, nothing consumed).

    Only under asyncio, whose awaitables can be left that way; other event loops are never
    asked. Called just before the final body message: a request body message the
    application left unread may be taken on the way (at most two, so an upload nobody reads
    is not drained here), and nobody reads it afterwards.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    for _ in range(2):
        step = receive().__await__()
        try:
            step.send(None)
        except StopIteration as returned:
            message = returned.value
        else:
            step.close()  # it would have to wait: the client is still there
            return False
        kind = message.get("type")
        if kind == "http.disconnect":
            return True
        if kind != "http.request":
            return False
    return False


class _Exchange:
    """One HTTP request's state, and the ``receive`` and ``send`` its application is given.

    A slotted object whose bound methods wrap the server's callables, rather than closures
    over the call's locals: one allocation for the state instead of a cell per variable and
    a function object per closure. It has no ``__init__``: the middleware sets every field
    right after creating it, which spares a Python call per request (at this level a
    measurable share of what the middleware costs). Every request has its own, never state
    on the middleware, which all concurrent requests share.
    """

    __slots__ = ("_receive", "_send", "active", "end", "finishing", "first_byte", "left",
                 "method", "owner", "received", "recorded", "scope", "sent", "start",
                 "status", "turn")  # fmt: skip

    owner: InferwatchMiddleware
    scope: Scope
    method: str
    _receive: Receive  # the server's
    _send: Send
    active: GaugeChild | None  # the in-flight gauge while the response is not over
    received: float  # body bytes; floats, as bisect against float bounds is faster
    sent: float
    status: int
    start: float
    first_byte: float  # when the first non-empty body chunk of a stream went out
    end: float  # when the final body message was ready, once it has been handed over
    left: float  # when the client was seen to go, if it did
    finishing: bool  # the final body message has been handed to the server
    recorded: _RouteChildren | None  # what the complete response was counted in
    turn: int | None  # the event loop's turn when the response was complete

    def release(self) -> None:
        """The response is over (complete, abandoned or failed): no longer in flight."""
        active = self.active
        if active is not None:
            self.active = None  # once only, even if dec() raises
            try:
                active.dec()
            except Exception as exc:
                self.owner._internal_error("http.end", exc)

    async def receive(self) -> Message:
        message: Message = await self._receive()
        try:
            body = message.get("body")
            if body:
                self.received += len(body)
            elif not self.finishing and not self.left and message["type"] == "http.disconnect":
                self.left = perf_counter()
                self.release()
        except Exception as exc:
            self.owner._internal_error("http.receive", exc)
        return message

    async def send(self, message: Message) -> None:
        final = False
        ready = 0.0  # when the final body message was ready to go
        try:
            kind = message["type"]
            if kind == "http.response.body":
                body = message.get("body")
                if body:
                    self.sent += len(body)
                if not message.get("more_body"):
                    final = self.finishing = True
                    ready = perf_counter()
                    late = ready - self.start >= DEPARTURE_CHECK_AFTER
                    if late and not self.left and client_gone(self._receive):
                        self.left = ready
                elif body and not self.first_byte:
                    self.first_byte = perf_counter()
            elif kind == "http.response.start":
                self.status = message["status"]
        except Exception as exc:
            self.owner._internal_error("http.send", exc)
        try:
            await self._send(message)
        except OSError:  # ASGI 2.4 servers raise this when the client has gone
            if not self.left and not self.end:
                self.left = perf_counter()
            raise
        if final:
            # Counted now rather than when the application returns: background work may
            # take minutes, and the request must not wait for it to be seen.
            self.end = ready
            owner = self.owner
            active = self.active  # release(), inlined
            if active is not None:
                self.active = None
                try:
                    active.dec()
                except Exception as exc:
                    owner._internal_error("http.end", exc)
            try:
                # LoopTurns.mark(), inlined
                turns = owner._turns
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    self.turn = None
                else:
                    if turns._queued_on is not loop:
                        turns._queued_on = loop
                        loop.call_soon(turns._turned)
                    self.turn = turns.turns
                self.recorded = owner._record_http(self, None, self.left or ready)
            except Exception as exc:
                owner._internal_error("http.record", exc)

    def finish(self, error: BaseException | None) -> None:
        """The application has returned (or raised ``error``): count what is left."""
        owner = self.owner
        if not self.end:  # no final body message: the response ended with the application
            done = perf_counter()
            self.release()  # still in flight until now
            try:
                owner._record_http(self, error, self.left or done)
            except Exception as exc:
                owner._internal_error("http.record", exc)
            return
        try:
            # Background work: the application kept going after the response, and let the
            # loop run meanwhile. A pause without a turn of the loop is a garbage collection
            # or a preempted process, not the application's work, so the clock is read only
            # when the loop has turned.
            recorded = self.recorded
            if recorded is not None:
                turn = self.turn
                if turn is None or turn != owner._turns.turns:
                    after = perf_counter() - self.end
                    if after >= BACKGROUND_FLOOR:
                        recorded.background().observe(after)
            if error is not None and not isinstance(error, asyncio.CancelledError):
                # Raised after a complete response (a background task): the request did not
                # fail, but the exception is still counted.
                route = owner._routes.template(self.scope)
                owner.metrics.exceptions.labels(self.method, route, owner._error_type(error)).inc()
        except Exception as exc:
            owner._internal_error("http.record", exc)


class InferwatchMiddleware:
    def __init__(self, app: Any, *, metrics: HttpMetrics, settings: HttpSettings) -> None:
        self.app = app
        self.metrics = metrics
        self.settings = settings
        self._exclude = settings.exclude_paths
        self._exemplar = settings.exemplar
        self._routes = RouteTemplates()
        self._children: dict[tuple[str, str, int, str], _RouteChildren] = {}
        # The same children for successes, by (id of the route object, method, status), for
        # routes whose template is fixed; valid for one generation of the route templates.
        self._fast: dict[tuple[int, str, int], _RouteChildren] = {}
        self._fast_generation = -1
        self._active: dict[str, GaugeChild] = {}
        self._sizes = settings.body_sizes
        self._turns = LoopTurns()
        # One bound per registry (Starlette rebuilds this middleware when it likes), whose
        # admitted types are shared by all workers in multiprocess mode.
        self._error_types = error_types(metrics.registry, "http", max_values=MAX_ERROR_TYPES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # HTTP is handled inline rather than in a helper coroutine: one coroutine less per
        # request is measurable at this level.
        if scope["type"] != "http" or scope["path"] in self._exclude:
            if scope["type"] == "websocket" and scope["path"] not in self._exclude:
                await self._websocket(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        method = scope.get("method")
        if method not in KNOWN_METHODS:
            method = OTHER
        active: GaugeChild | None = None
        try:
            active = self._active.get(method)
            if active is None:
                active = self._active[method] = self.metrics.active_requests.labels(method)
            active.inc()
        except Exception as exc:
            active = None  # never decrement what was not incremented
            self._internal_error("http.start", exc)
        exchange = _Exchange()  # every field set here, in the order of the slots above
        exchange.owner = self
        exchange.scope = scope
        exchange.method = method
        exchange._receive = receive
        exchange._send = send
        exchange.active = active
        exchange.received = exchange.sent = exchange.first_byte = exchange.end = 0.0
        exchange.left = 0.0
        exchange.status = 0
        exchange.finishing = False
        exchange.recorded = exchange.turn = None
        exchange.start = perf_counter()
        error: BaseException | None = None
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except BaseException as exc:
            error = exc
            raise
        finally:
            # Most requests end here with nothing left to count: the response was complete
            # and counted, the loop has not turned since (no background work) and nothing
            # was raised. finish() would find just that, a call later.
            if error is not None or not exchange.end or exchange.turn != self._turns.turns:
                exchange.finish(error)

    def _record_http(
        self, exchange: _Exchange, error: BaseException | None, stop: float
    ) -> _RouteChildren:
        """Count a request whose response has ended at ``stop``: complete, abandoned by the
        client (``exchange.left``), or cut short by ``error``."""
        status = exchange.status
        children: _RouteChildren | None = None
        route = raised = ""  # worked out only where an error needs them
        if error is None and not exchange.left:
            # The common case, whose children follow from the route object, the method and
            # the status alone wherever the route's template does (see RouteTemplates.fixed):
            # one lookup, without working out the template and the error type again.
            if not status:
                status = 500
            fast_key = (id(exchange.scope.get("route")), exchange.method, status)
            if self._fast_generation == self._routes.generation:
                children = self._fast.get(fast_key)
            else:  # the route tree was walked again: templates may have changed
                self._fast.clear()
                self._fast_generation = self._routes.generation
            if children is None:
                children, route, raised = self._resolve(exchange, None, status)
                if self._routes.fixed(exchange.scope.get("route")):
                    self._fast[fast_key] = children
        else:
            children, route, raised = self._resolve(exchange, error, status)
        start = exchange.start
        if self._exemplar is None or (exemplar := self._exemplar()) is None:
            if children.request_size is None:  # no body sizes: one observation, no call
                children.duration.observe(stop - start)
            else:
                children.record(stop - start, exchange.received, exchange.sent)
        else:  # opt-in tracing: the exemplar rides on the locked, slower path
            children.duration.observe(stop - start, exemplar)
            children.record(None, exchange.received, exchange.sent)
        if exchange.first_byte:
            children.ttfb().observe(exchange.first_byte - start)
        if raised:
            self.metrics.exceptions.labels(exchange.method, route, raised).inc()
        return children

    def _resolve(
        self, exchange: _Exchange, error: BaseException | None, status: int
    ) -> tuple[_RouteChildren, str, str]:
        """The children a request is counted in, its route template and the error type it
        raised ("" for none), worked out in full."""
        left = exchange.left
        # Cancellation is the server giving up on the request: a disconnect, or shutdown.
        cancelled = error is not None and isinstance(error, asyncio.CancelledError)
        if left or cancelled:
            status = CLIENT_CLOSED  # whatever the application sent, the client did not get it
        elif not status:  # an exception before the response started
            status = 500
        raised = self._error_type(error) if error is not None and not cancelled else ""
        if raised:
            failure = raised
        elif status == CLIENT_CLOSED or not 100 <= status < 500:
            failure = _STATUS_LABELS.get(status, OTHER)
        else:
            failure = ""
        method = exchange.method
        route = self._routes.template(exchange.scope)
        key = (method, route, status, failure)
        children = self._children.get(key)
        if children is None:
            status_label = _STATUS_LABELS.get(status, OTHER)
            children = _RouteChildren(
                self.metrics, method, route, status_label, failure, self._sizes
            )
            self._children[key] = children
        return children, route, raised

    def _error_type(self, error: BaseException) -> str:
        return self._error_types(error_type(error))

    # -- WebSocket -------------------------------------------------------------------------
    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        m = self.metrics
        start = perf_counter()
        accepted_at = 0.0
        rejected = False
        close: tuple[Any, str] | None = None  # (code, closed_by)
        received: CounterChild | None = None
        sent: CounterChild | None = None
        active: GaugeChild | None = None

        async def receive_observing() -> Message:
            nonlocal close
            message: Message = await receive()
            try:
                kind = message["type"]
                if kind == "websocket.receive":
                    if received is not None:
                        received.inc()
                elif kind == "websocket.disconnect" and close is None:
                    close = (message.get("code", 1005), "client")
            except Exception as exc:
                self._internal_error("websocket.receive", exc)
            return message

        async def send_observing(message: Message) -> None:
            nonlocal accepted_at, rejected, close, received, sent, active
            try:
                kind = message["type"]
                if kind == "websocket.send":
                    if sent is not None:
                        sent.inc()
                elif kind == "websocket.accept":
                    accepted_at = perf_counter()
                    route = self._routes.template(scope)
                    received = m.ws_messages.labels(route, "received")
                    sent = m.ws_messages.labels(route, "sent")
                    active = m.ws_active.labels(route)
                    active.inc()
                elif kind == "websocket.close":
                    if accepted_at:
                        if close is None:
                            close = (message.get("code", 1000), "server")
                    else:
                        rejected = True
                elif kind == "websocket.http.response.start":
                    rejected = True
            except Exception as exc:
                self._internal_error("websocket.send", exc)
            await send(message)

        failed = False
        try:
            await self.app(scope, receive_observing, send_observing)
        except BaseException:
            failed = True
            raise
        finally:
            try:
                done = perf_counter()
                route = self._routes.template(scope)
                if accepted_at:
                    outcome = "accepted"
                    if active is not None:
                        active.dec()
                    m.ws_setup.labels(route).observe(accepted_at - start)
                    m.ws_session.labels(route).observe(done - accepted_at)
                    code, closed_by = close or (1011 if failed else 1006, "server")
                    label = close_code_label(code, from_client=closed_by == "client")
                    m.ws_closed.labels(route, label, closed_by).inc()
                else:
                    outcome = "rejected" if rejected and not failed else "failed"
                m.ws_attempts.labels(route, outcome).inc()
            except Exception as exc:
                self._internal_error("websocket.record", exc)

    # -- own failures ----------------------------------------------------------------------
    def _internal_error(self, component: str, exc: Exception) -> None:
        report_error(self.metrics.registry, component, exc, log)
