"""A host source for the exporter's host collector that reads a ``/proc``-style directory
tree, so a fixture tree (tests/fixtures/host) can stand in for the host and the collector's
output be compared exactly, as node_exporter's tests do with their fixture ``/proc``.

It reads the files psutil reads on Linux and derives the same figures from them: CPU times
from ``stat`` (in clock ticks), memory from ``meminfo``, disk counters from ``diskstats``
(sectors of 512 bytes, as the kernel counts them there), interface counters from
``net/dev``, and each process's memory from ``<pid>/statm`` (in pages), its parent from
``<pid>/stat``. The load average is read from ``loadavg``. Clock tick and page size are
given, not taken from this machine, so a fixture means the same everywhere.
"""

from __future__ import annotations

from pathlib import Path

from inferwatch.exporters.host import CPU_MODES

SECTOR_BYTES = 512  # the unit of /proc/diskstats, whatever the device's sector size


class ProcfsSource:
    def __init__(self, root: Path, *, ticks_per_second: int = 100, page_size: int = 4096) -> None:
        self.root = root
        self.ticks_per_second = ticks_per_second
        self.page_size = page_size

    def _lines(self, name: str) -> list[str]:
        return (self.root / name).read_text(encoding="ascii").splitlines()

    def cpu_times(self) -> dict[str, float]:
        ticks = self._lines("stat")[0].split()[1:]  # the "cpu" line: every CPU together
        # Older kernels report fewer modes; guest times after steal are left out on purpose.
        pairs = zip(CPU_MODES, ticks, strict=False)
        return {mode: int(t) / self.ticks_per_second for mode, t in pairs}

    def cpu_count(self) -> int:
        return sum(1 for line in self._lines("stat") if line.split()[0][3:].isdigit())

    def load_average(self) -> tuple[float, float, float]:
        one, five, fifteen = self._lines("loadavg")[0].split()[:3]
        return float(one), float(five), float(fifteen)

    def memory(self) -> tuple[int, int]:
        kib = {}
        for line in self._lines("meminfo"):
            key, value = line.split(":")
            kib[key] = int(value.split()[0])
        # What psutil reports as available on kernels since 3.14.
        return kib["MemTotal"] * 1024, kib["MemAvailable"] * 1024

    def _parents(self) -> dict[int, int]:
        parents = {}
        for stat in self.root.glob("[0-9]*/stat"):
            text = stat.read_text(encoding="ascii")
            # the command name is in parentheses and may hold spaces and parentheses itself
            fields = text[text.rindex(")") + 2 :].split()
            parents[int(stat.parent.name)] = int(fields[1])
        return parents

    def process_memory(self, root: int) -> list[tuple[int, int]]:
        parents = self._parents()
        if root not in parents:
            return []
        tree, frontier = [root], [root]
        while frontier:
            frontier = sorted(pid for pid, parent in parents.items() if parent in frontier)
            tree += frontier
        found = []
        for pid in tree:
            size, resident = (self.root / str(pid) / "statm").read_text().split()[:2]
            found.append((int(resident) * self.page_size, int(size) * self.page_size))
        return found

    def disk_io(self) -> dict[str, dict[str, int]]:
        disks = {}
        for line in self._lines("diskstats"):
            f = line.split()
            disks[f[2]] = {
                "read_count": int(f[3]),
                "read_bytes": int(f[5]) * SECTOR_BYTES,
                "write_count": int(f[7]),
                "write_bytes": int(f[9]) * SECTOR_BYTES,
            }
        return disks

    def net_io(self) -> dict[str, dict[str, int]]:
        nics = {}
        for line in self._lines("net/dev")[2:]:  # two header lines
            name, counters = line.split(":")
            f = [int(v) for v in counters.split()]
            nics[name.strip()] = {
                "bytes_recv": f[0],
                "packets_recv": f[1],
                "errin": f[2],
                "dropin": f[3],
                "bytes_sent": f[8],
                "packets_sent": f[9],
                "errout": f[10],
                "dropout": f[11],
            }
        return nics
