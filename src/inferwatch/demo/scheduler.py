"""A priority queue per model and a worker per model that runs requests in batches.

A request waits in its model's queue until the worker takes it into a batch: the worker
waits for a first request, makes sure the model is loaded, then gathers up to
``max_batch_size`` requests for at most ``batch_window`` seconds and runs them as one. A
request that gives up while queued (timeout, client gone) leaves the queue at once, so it
never takes a place in a batch.

A request may carry several inputs (its ``size``, the client's ``batch_size``): they count
as that many requests of the batch and stay together, so one larger than ``max_batch_size``
runs as a batch of its own size.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from dataclasses import dataclass, field

from inferwatch.ai import InferenceMetrics
from inferwatch.demo.generation import Generator
from inferwatch.demo.models import CATALOGUE, ModelManager

PRIORITIES: dict[str, int] = {"high": 0, "normal": 1, "low": 2}  # lower runs first
DEFAULT_MAX_BATCH_SIZE = 4
DEFAULT_BATCH_WINDOW = 0.05  # model seconds: scaled by the time scale like every model delay
DEFAULT_MAX_QUEUE = 64


class QueueFull(Exception):
    """More requests are waiting than ``max_queue`` allows: answer 429."""


@dataclass(order=True)
class Ticket:
    rank: int
    seq: int
    duration: float = field(compare=False)
    picked: asyncio.Future[None] = field(compare=False)  # set when a batch takes it
    done: asyncio.Future[None] = field(compare=False)  # set when its batch has run
    size: int = field(default=1, compare=False)  # inputs it carries, run in the same batch


class Admission:
    """A place among the waiting requests, held from admission until a batch takes it."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler: Scheduler | None = scheduler

    def release(self) -> None:
        if self._scheduler is not None:
            self._scheduler.waiting -= 1
            self._scheduler = None


class ModelQueue:
    def __init__(self) -> None:
        self.heap: list[Ticket] = []
        self.changed = asyncio.Event()

    def put(self, ticket: Ticket) -> None:
        heapq.heappush(self.heap, ticket)
        self.changed.set()

    def remove(self, ticket: Ticket) -> None:
        with contextlib.suppress(ValueError):  # already taken by a batch
            self.heap.remove(ticket)
            heapq.heapify(self.heap)
            self.changed.set()

    @property
    def inputs(self) -> int:
        return sum(t.size for t in self.heap)

    def take(self, n: int) -> list[Ticket]:
        """Tickets in priority order while their inputs fit in ``n``; the first always."""
        taken: list[Ticket] = []
        inputs = 0
        while self.heap and (not taken or inputs + self.heap[0].size <= n):
            ticket = heapq.heappop(self.heap)
            taken.append(ticket)
            inputs += ticket.size
        return [t for t in taken if not t.picked.done()]  # skip any cancelled meanwhile


class Scheduler:
    def __init__(
        self,
        models: ModelManager,
        generator: Generator,
        infer: InferenceMetrics,
        *,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        batch_window: float = DEFAULT_BATCH_WINDOW,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> None:
        if max_batch_size < 1 or max_queue < 1 or batch_window < 0:
            raise ValueError("max_batch_size and max_queue must be >= 1, batch_window >= 0")
        self.models = models
        self.generator = generator
        self.infer = infer
        self.max_batch_size = max_batch_size
        self.batch_window = batch_window * generator.time_scale  # wall-clock seconds
        self.max_queue = max_queue
        self.waiting = 0  # admitted requests not yet taken into a batch
        self._queues: dict[str, ModelQueue] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._seq = itertools.count()

    def admit(self) -> Admission:
        """Reserve a place before the request starts (raises QueueFull when none is left)."""
        if self.waiting >= self.max_queue:
            raise QueueFull(f"{self.waiting} requests are already waiting")
        self.waiting += 1
        return Admission(self)

    def submit(self, model: str, duration: float, priority: str, size: int = 1) -> Ticket:
        """Queue one request of ``size`` inputs of ``duration`` output seconds each. Its
        ``picked`` future resolves when a batch takes it (the end of its queue stage),
        ``done`` when that batch has run; a request that gives up must :meth:`withdraw` its
        ticket."""
        if size < 1:
            raise ValueError(f"a request carries at least one input, got {size}")
        loop = asyncio.get_running_loop()
        ticket = Ticket(
            PRIORITIES[priority],
            next(self._seq),
            duration,
            loop.create_future(),
            loop.create_future(),
            size,
        )
        self._queue(model).put(ticket)
        return ticket

    def withdraw(self, model: str, ticket: Ticket) -> None:
        """Take a ticket that gave up out of its queue (a no-op once a batch has it)."""
        if not ticket.picked.done():
            ticket.picked.cancel()
        self._queue(model).remove(ticket)

    async def stop(self) -> None:
        """Stop the workers; requests still queued end as cancelled."""
        for task in self._workers.values():
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
        self._workers.clear()
        for queue in self._queues.values():
            self._fail(queue.take(len(queue.heap)), asyncio.CancelledError())
        self._queues.clear()

    def _queue(self, model: str) -> ModelQueue:
        queue = self._queues.get(model)
        if queue is None:
            queue = self._queues[model] = ModelQueue()
            self._workers[model] = asyncio.create_task(self._work(model, queue))
        return queue

    async def _work(self, model: str, queue: ModelQueue) -> None:
        while True:
            while not queue.heap:
                queue.changed.clear()
                await queue.changed.wait()
            try:
                await self.models.acquire(model)  # queued requests keep waiting meanwhile
            except Exception as exc:  # a failed load fails the requests that waited for it
                self._fail(queue.take(self.max_batch_size), exc)
                continue
            try:
                batch, waited = await self._gather(queue)
                if batch:
                    await self._run(model, batch, waited)
            finally:
                await self.models.release(model)
            # Let a worker woken by the release load its model before this one takes its
            # own again: with every model slot busy, models would otherwise starve.
            await asyncio.sleep(0)

    async def _gather(self, queue: ModelQueue) -> tuple[list[Ticket], float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.batch_window
        while queue.heap and queue.inputs < self.max_batch_size:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            queue.changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(queue.changed.wait(), remaining)
        return queue.take(self.max_batch_size), loop.time() - started

    async def _run(self, model: str, batch: list[Ticket], waited: float) -> None:
        for ticket in batch:
            ticket.picked.set_result(None)
        self.infer.batch(model, sum(t.size for t in batch), waited)
        try:
            kind = CATALOGUE[model].kind
            durations = [t.duration for t in batch for _ in range(t.size)]
            await self.generator.generate_batch(kind, durations)
        except asyncio.CancelledError:
            self._fail(batch, asyncio.CancelledError())
            raise
        except Exception as exc:
            self._fail(batch, exc)
        else:
            for ticket in batch:
                if not ticket.done.done():
                    ticket.done.set_result(None)

    @staticmethod
    def _fail(batch: list[Ticket], exc: BaseException) -> None:
        for ticket in batch:
            future = ticket.done if ticket.picked.done() else ticket.picked
            if future.done():
                continue
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
