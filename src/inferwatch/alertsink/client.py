"""A small client of the alert sink, for tests and scripts (standard library only).

sink = AlertSinkClient("http://127.0.0.1:9095")
record = sink.wait_for("InferwatchHighErrorRate", "firing", receiver="pager", timeout=20)
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from typing import Any

Record = dict[str, Any]


class AlertSinkClient:
    def __init__(self, base_url: str, *, timeout: float = 5.0, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout  # of one HTTP request
        # The sink's bearer token, when it requires one; never part of repr or the URL.
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def __repr__(self) -> str:
        return f"AlertSinkClient({self.base_url!r})"

    def _call(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(
            f"{self.base_url}{path}", method=method, headers=self._headers
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.load(response)

    def notifications(
        self,
        *,
        receiver: str | None = None,
        alertname: str | None = None,
        status: str | None = None,
    ) -> list[Record]:
        """The recorded alerts matching every filter given, oldest first."""
        query = {
            name: value
            for name, value in (
                ("receiver", receiver),
                ("alertname", alertname),
                ("status", status),
            )
            if value is not None
        }
        path = "/notifications"
        if query:
            path += "?" + urllib.parse.urlencode(query)
        return list(self._call(path))

    def clear(self) -> int:
        return int(self._call("/notifications", "DELETE")["cleared"])

    def wait_for(
        self,
        alertname: str,
        status: str = "firing",
        receiver: str | None = None,
        timeout: float = 10.0,
        *,
        interval: float = 0.05,
    ) -> Record:
        """Poll until such an alert is recorded and return the first one.

        Raises TimeoutError after ``timeout`` seconds, naming what was recorded meanwhile.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = self.notifications(receiver=receiver, alertname=alertname, status=status)
            if found:
                return found[0]
            if time.monotonic() >= deadline:
                seen = [(r["receiver"], r["alertname"], r["status"]) for r in self.notifications()]
                raise TimeoutError(
                    f"no {status} {alertname!r} for receiver {receiver or 'any'} within "
                    f"{timeout:g} s; recorded (receiver, alertname, status): {seen}"
                )
            time.sleep(interval)
