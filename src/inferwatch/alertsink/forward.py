"""Forward accepted notifications to other URLs, off the request path.

Each delivery runs on a small thread pool with a timeout, so a slow or dead target never
delays the answer to Alertmanager; past ``max_pending`` deliveries are dropped and counted
rather than queued without bound.
"""

from __future__ import annotations

import logging
import threading
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("inferwatch.alertsink")

Result = Callable[[str], None]  # called with "ok", "error" or "dropped"


class Forwarder:
    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout: float = 5.0,
        max_pending: int = 100,
        on_result: Result | None = None,
    ) -> None:
        self.urls = tuple(urls)
        self.timeout = timeout
        self.max_pending = max_pending
        self._on_result = on_result or (lambda result: None)
        self._pending = 0
        self._lock = threading.Lock()
        self._executor = (
            ThreadPoolExecutor(max_workers=4, thread_name_prefix="alertsink-forward")
            if self.urls
            else None
        )

    def submit(self, body: bytes) -> None:
        """Queue ``body`` for every URL and return at once."""
        if self._executor is None:
            return
        for url in self.urls:
            with self._lock:
                if self._pending >= self.max_pending:
                    full = True
                else:
                    full = False
                    self._pending += 1
            if full:
                log.warning("alert sink: not forwarding to %s: too many pending", url)
                self._on_result("dropped")
                continue
            self._executor.submit(self._deliver, url, body)

    def _deliver(self, url: str, body: bytes) -> None:
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
            result = "ok"
        except Exception as exc:  # refused, timed out, non-2xx (HTTPError), bad URL
            log.warning("alert sink: forwarding to %s failed: %s", url, exc)
            result = "error"
        finally:
            with self._lock:
                self._pending -= 1
        self._on_result(result)

    def close(self) -> None:
        if self._executor is not None:
            # Don't hold up shutdown for a dead target: pending deliveries are abandoned.
            self._executor.shutdown(wait=False, cancel_futures=True)
