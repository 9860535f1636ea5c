"""Steady HTTP and WebSocket traffic against the demo service (including a client that gives
up on a slow generation now and then), and its fault switch.

Used to give every dashboard panel real data: by the dashboard tests and by
``scripts/render_dashboards.py``. Needs httpx and websockets (the ``dev`` extra).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import Counter
from typing import Any

HTTP_TIMEOUT = 10.0
# How long the impatient client waits for a long generation before hanging up: shorter than
# the generation even at the tests' 1/100 speed (300 s of music is 75 model seconds).
GIVE_UP_AFTER = 0.2
SLOW_MUSIC_SECONDS = 300.0


class Traffic:
    """``workers`` threads cycling through the demo's endpoints until :meth:`stop`."""

    def __init__(self, base_url: str, *, workers: int = 3) -> None:
        self.base_url = base_url.rstrip("/")
        self.workers = workers
        self.sent: Counter[str] = Counter()  # outcome -> count, for diagnostics
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def __enter__(self) -> Traffic:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        for i in range(self.workers):
            thread = threading.Thread(
                target=self._run, args=(i,), daemon=True, name=f"demo-traffic-{i}"
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=HTTP_TIMEOUT + 5)

    def set_faults(self, **faults: float) -> dict[str, Any]:
        import httpx

        response = httpx.put(f"{self.base_url}/admin/faults", json=faults, timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        return dict(response.json())

    def reset_faults(self) -> None:
        import httpx

        httpx.delete(f"{self.base_url}/admin/faults", timeout=HTTP_TIMEOUT).raise_for_status()

    def _count(self, what: str) -> None:
        with self._lock:
            self.sent[what] += 1

    def _run(self, worker: int) -> None:
        import httpx

        with httpx.Client(base_url=self.base_url, timeout=HTTP_TIMEOUT) as http:
            for n in itertools.count():
                if self._stop.is_set():
                    return
                try:
                    self._round(http, worker, n)
                except Exception as exc:  # keep the load going whatever one request does
                    self._count(type(exc).__name__)

    def _round(self, http: Any, worker: int, n: int) -> None:
        prompt = f"rain on a tin roof {n % 7}"
        calls = (
            lambda: http.post(
                "/v1/audio/generate", json={"prompt": prompt, "duration_seconds": 1 + n % 3}
            ),
            lambda: http.post(
                "/v1/music/generate", json={"prompt": prompt, "duration_seconds": 2 + n % 5}
            ),
            lambda: http.get(
                "/v1/audio/stream", params={"prompt": prompt, "chunks": 4, "chunk_seconds": 0.1}
            ),
            lambda: self._job(http, prompt, "audio"),
            # A third model kind makes the demo's two model slots evict (LRU) now and then.
            lambda: self._job(http, prompt, "video" if n % 4 == worker % 4 else "music"),
            lambda: http.get(f"/v1/jobs/missing-{worker}"),  # a 404 now and then
        )
        for call in calls:
            response = call()
            self._count(str(response.status_code))
        self._websocket(prompt)
        # Now and then a client gives up. A departure counts as a failed request (499), so
        # one in 20 rounds of one worker keeps the music route's error ratio near 1.5 %,
        # well under the 5 % warning: a clean run must not page anyone.
        if worker == 0 and n % 20 == 0:
            self._give_up(prompt)

    def _give_up(self, prompt: str) -> None:
        """A client that stops waiting for a slow generation and hangs up, as real users do:
        the demo cancels the work (answered 499) and counts the cancellation by stage."""
        import httpx

        # Its own client, closed on the way out, so the server surely sees the disconnect.
        with httpx.Client(base_url=self.base_url, timeout=GIVE_UP_AFTER) as impatient:
            try:
                response = impatient.post(
                    "/v1/music/generate",
                    json={"prompt": prompt, "duration_seconds": SLOW_MUSIC_SECONDS},
                )
            except httpx.TimeoutException:
                self._count("gave-up")
                return
        self._count(str(response.status_code))  # finished in time: a very fast demo

    def _job(self, http: Any, prompt: str, kind: str) -> Any:
        created = http.post(
            "/v1/jobs", json={"kind": kind, "prompt": prompt, "duration_seconds": 1}
        )
        if created.status_code != 202:
            return created
        return http.get(created.json()["status_url"])

    def _websocket(self, prompt: str) -> None:
        from websockets.exceptions import ConnectionClosed, InvalidStatus
        from websockets.sync.client import connect

        url = self.base_url.replace("http", "ws", 1) + "/v1/ws/generate?token=demo"
        try:
            with connect(url, open_timeout=HTTP_TIMEOUT, close_timeout=2) as ws:
                ws.send(json.dumps({"prompt": prompt, "chunks": 3, "chunk_seconds": 0.1}))
                for message in ws:
                    if isinstance(message, str) and '"done"' in message:
                        break
            self._count("ws")
        except (ConnectionClosed, InvalidStatus, OSError, TimeoutError):
            self._count("ws-failed")
