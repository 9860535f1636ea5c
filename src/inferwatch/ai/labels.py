"""Bounded label values: user-given names (models, caches, stages) must not grow a scrape
without limit, so each label keeps either an allow-list or a cap and folds the rest into
``_other``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

OTHER = "_other"

log = logging.getLogger("inferwatch.ai")


class BoundedLabel:
    """Maps raw values of one label to at most ``max_values`` distinct values (or to an
    allow-list), and everything else to :data:`OTHER`.

    With a cap, the first ``max_values`` distinct values seen are kept for the life of the
    process: a series must not change its name halfway through.
    """

    def __init__(
        self,
        label: str,
        *,
        allowed: Iterable[str] | None = None,
        max_values: int | None = None,
    ) -> None:
        self.label = label
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._warned = False
        self.reconfigure(allowed=allowed, max_values=max_values)

    def reconfigure(
        self, *, allowed: Iterable[str] | None = None, max_values: int | None = None
    ) -> None:
        """Change the bound; meant for before first use (values already kept stay kept)."""
        if allowed is not None and max_values is not None:
            raise ValueError(f"{self.label}: give an allow-list or a cap, not both")
        if allowed is None and (max_values is None or max_values < 1):
            raise ValueError(f"{self.label}: the cap must be at least 1, got {max_values!r}")
        if isinstance(allowed, str):
            raise TypeError(f"{self.label}: the allow-list must be a list of names, not a str")
        with self._lock:
            self.allowed = frozenset(str(v) for v in allowed) if allowed is not None else None
            self.max_values = max_values

    @property
    def config(self) -> tuple[frozenset[str] | None, int | None]:
        return self.allowed, self.max_values

    @property
    def used(self) -> bool:
        return bool(self._seen)

    def __call__(self, value: object) -> str:
        value = str(value)
        if self.allowed is not None:
            if value in self.allowed:
                return value
            self._warn_once(value, "is not in the allow-list")
            return OTHER
        if value in self._seen:  # the common case, no lock: set lookups are atomic
            return value
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) < (self.max_values or 0):
                self._seen.add(value)
                return value
        self._warn_once(value, f"is past the cap of {self.max_values} values")
        return OTHER

    def _warn_once(self, value: str, why: str) -> None:
        if not self._warned:  # once per label: this can fire on every request
            self._warned = True
            log.warning(
                "inferwatch: %s %r %s; it and later ones are reported as %r",
                self.label, value, why, OTHER,
            )  # fmt: skip
