"""What one client may cost a server: :class:`ServerLimits` (no dependencies, so it can be
imported and configured where uvicorn is not installed)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ServerLimits:
    """What one client may cost the server. The defaults fit a metrics endpoint, whose
    requests are a few hundred bytes and whose scrapers answer within milliseconds."""

    request_timeout: float = 5.0
    """Seconds a client has to send a whole request, head and body."""
    idle_timeout: float = 60.0
    """Seconds a kept-alive connection may sit between requests (longer than any scrape
    interval a keep-alive is worth for)."""
    max_connections: int = 64
    """Connections held at once; past it, the oldest one not being answered is closed."""
    send_timeout: float = 10.0
    """Seconds a response may wait on a client that stopped reading before it is dropped."""

    def __post_init__(self) -> None:
        for name in ("request_timeout", "idle_timeout", "send_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number of seconds, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if isinstance(self.max_connections, bool) or not isinstance(self.max_connections, int):
            raise TypeError(f"max_connections must be an integer, got {self.max_connections!r}")
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {self.max_connections}")
