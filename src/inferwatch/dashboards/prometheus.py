"""A small Prometheus HTTP API client and the Grafana variable substitution its callers need.

Standard library only: the renderer and the tests read a handful of queries, and a failed
query must say which expression failed and why (Prometheus's own error text).
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

Series = dict[str, Any]  # {"metric": {...}, "values": [[t, "v"], ...]} or "value": [t, "v"]
DEFAULT_VARIABLES = {"__rate_interval": "1m"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


class QueryError(RuntimeError):
    """Prometheus rejected a query (bad PromQL) or could not be reached."""


def substitute(expr: str, variables: Mapping[str, str] | None = None) -> str:
    """Replace ``$name`` / ``${name}`` as Grafana would; unknown variables match anything.

    Template variables sit inside regex matchers (``job=~"$job"``), so ``.*`` is what
    Grafana's "All" sends for them.
    """
    values = {**DEFAULT_VARIABLES, **(variables or {})}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return values.get(name, ".*")

    return _VARIABLE.sub(replace, expr)


class Prometheus:
    def __init__(self, url: str, timeout: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: Mapping[str, str | float]) -> Any:
        query = urllib.parse.urlencode({k: str(v) for k, v in params.items()})
        request = urllib.request.Request(f"{self.url}{path}?{query}")
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
        if body.get("status") != "success":
            raise QueryError(f"{params.get('query')!r}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[Series]:
        params: dict[str, str | float] = {"query": expr}
        if at is not None:
            params["time"] = at
        return list(self._get("/api/v1/query", params)["result"])

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        params = {"query": expr, "start": start, "end": end, "step": step}
        return list(self._get("/api/v1/query_range", params)["result"])

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=self.timeout) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False
