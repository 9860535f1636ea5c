"""The ``memory_leak_mb_per_second`` fault: memory that grows until the fault is switched off.

Chunks are 1 MiB of non-zero bytes: written memory is resident (zeroed pages from calloc
would not raise RSS), and allocations this large are mmap'ed, so dropping them gives the
memory back to the operating system at once. The total stops at :data:`MAX_LEAK_BYTES` so
the demo cannot take the machine down.
"""

from __future__ import annotations

MIB = 1024 * 1024
CHUNK = MIB
MAX_LEAK_BYTES = 512 * MIB


class MemoryLeak:
    def __init__(self, cap: int = MAX_LEAK_BYTES) -> None:
        self.cap = cap
        self._chunks: list[bytes] = []
        self._owed = 0.0  # bytes due but not yet allocated (less than a chunk)

    @property
    def leaked(self) -> int:
        return len(self._chunks) * CHUNK

    def advance(self, mib_per_second: float, seconds: float) -> None:
        """Leak what ``seconds`` at ``mib_per_second`` add up to; a rate of 0 frees it all."""
        if mib_per_second <= 0:
            self._chunks.clear()
            self._owed = 0.0
            return
        self._owed += mib_per_second * MIB * seconds
        while self._owed >= CHUNK and self.leaked + CHUNK <= self.cap:
            self._chunks.append(b"\xa5" * CHUNK)
            self._owed -= CHUNK
        if self.leaked + CHUNK > self.cap:
            self._owed = 0.0  # at the cap: stop accruing
