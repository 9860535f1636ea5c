"""Bounded label values of the AI metrics: user-given names (models, caches, stages) must not
grow a scrape without limit, so each label keeps either an allow-list or a cap and folds the
rest into ``_OTHER``. The mechanism is :class:`inferwatch.metrics.labels.BoundedLabel`; in
multiprocess mode the cap holds across all workers and their restarts."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from inferwatch.metrics import labels
from inferwatch.metrics.labels import OTHER

__all__ = ["OTHER", "BoundedLabel"]

log = logging.getLogger("inferwatch.ai")


class BoundedLabel(labels.BoundedLabel):
    """Maps raw values of one AI label to at most ``max_values`` distinct values (or to an
    allow-list), and everything else to :data:`OTHER`.

    With a cap, the first ``max_values`` distinct values seen are kept for the life of the
    service: a series must not change its name halfway through.
    """

    def __init__(
        self,
        label: str,
        *,
        allowed: Iterable[str] | None = None,
        max_values: int | None = None,
    ) -> None:
        # One bound per label name, shared by every AI metric carrying the label (see
        # RegistryState.bound), so the name in the shared directory is the label's.
        super().__init__(
            label,
            name=f"ai.{label}",
            allowed=allowed,
            max_values=max_values,
            logger=log,
        )
