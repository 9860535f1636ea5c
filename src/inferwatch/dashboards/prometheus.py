"""Grafana's variable substitution, for running a dashboard's queries outside Grafana.

The queries themselves go through :mod:`inferwatch.stack.prometheus_api`, inferwatch's one
Prometheus client.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

DEFAULT_VARIABLES = {"__rate_interval": "1m"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


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
