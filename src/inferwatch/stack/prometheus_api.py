"""inferwatch's one client of Prometheus's HTTP API: queries, targets, rules and alerts.

The stack's status line, the reports, the dashboard renderer and the tests all read
Prometheus through it, so that an unreachable server or a rejected query reads the same
everywhere: a :class:`QueryError` that says which expression or endpoint failed and why
(Prometheus's own error text). Standard library only.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

Series = dict[str, Any]  # {"metric": {...}, "values": [[t, "v"], ...]} or "value": [t, "v"]


class QueryError(RuntimeError):
    """Prometheus rejected a query (bad PromQL), could not be reached, or did not answer
    with its API's JSON."""


class Prometheus:
    def __init__(self, url: str, timeout: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: Mapping[str, str | float] | None = None) -> Any:
        """The ``data`` of an API answer; what failed is named by its query, else its path."""
        what = repr(params["query"]) if params and "query" in params else path
        query = urllib.parse.urlencode({k: str(v) for k, v in (params or {}).items()})
        request = urllib.request.Request(f"{self.url}{path}" + (f"?{query}" if query else ""))
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:  # 400/422 carry Prometheus's explanation
            try:
                body = json.load(exc)
            except ValueError:
                raise QueryError(f"{path}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise QueryError(f"{path}: {exc}") from None
        except ValueError:
            raise QueryError(f"{path}: the answer is not Prometheus's JSON") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error", body) if isinstance(body, dict) else body
            raise QueryError(f"{what}: {error}")
        return body.get("data")

    def query(self, expr: str, at: float | None = None) -> list[Series]:
        """An instant query, at ``at`` (Unix time) or now."""
        params: dict[str, str | float] = {"query": expr}
        if at is not None:
            params["time"] = at
        return list(self._get("/api/v1/query", params)["result"])

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        params: dict[str, str | float] = {"query": expr, "start": start, "end": end, "step": step}
        return list(self._get("/api/v1/query_range", params)["result"])

    def targets(self, state: str = "active") -> list[dict[str, Any]]:
        """The scrape targets in ``state`` (``active`` or ``dropped``), as Prometheus lists
        them (``labels``, ``health``, ``lastError``, ...)."""
        data = self._get("/api/v1/targets", {"state": state})
        return list(data.get(f"{state}Targets") or [])

    def rules(self) -> list[dict[str, Any]]:
        """The loaded rule groups, each with its ``rules`` and their health."""
        return list(self._get("/api/v1/rules")["groups"])

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts pending or firing now, with their ``labels`` and ``state``."""
        return list(self._get("/api/v1/alerts")["alerts"])

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=self.timeout) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False
