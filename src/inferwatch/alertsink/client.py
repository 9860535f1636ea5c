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
    def __init__(self, base_url: str, *, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout  # of one HTTP request

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
        url = f"{self.base_url}/notifications"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        with urllib.request.urlopen(url, timeout=self.timeout) as response:
            return list(json.load(response))

    def clear(self) -> int:
        request = urllib.request.Request(f"{self.base_url}/notifications", method="DELETE")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return int(json.load(response)["cleared"])

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
