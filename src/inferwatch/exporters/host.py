"""Host and process metrics via psutil, for hosts that run no node_exporter.

Host-wide: CPU seconds by mode and usage, load, memory, disk and network I/O counters. Disks
and interfaces are bounded: partitions, loop/ram devices, ``lo`` and container veth pairs are
skipped and at most ``max_devices`` of each are reported, so a host with hundreds of
containers cannot explode the series count.

Process: resident and virtual memory of the watched processes (by default this process and
its children; give the service's master pid to watch a multi-worker service), summed, plus
``inferwatch_process_resident_memory_growth_bytes_per_second``: the least-squares slope of
the summed RSS over the samples taken at scrape time in the last ``growth_window`` seconds
(default 600). A leak shows as a persistently positive slope without any PromQL ``deriv``;
the gauge is absent until the samples span ``growth_min_span`` seconds (default 60), since a
slope over a few seconds is noise (allocator and GC churn).
"""

from __future__ import annotations

import collections
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import psutil
from prometheus_client.metrics_core import Metric

from inferwatch.exporters.descriptors import Descriptor, non_empty

if TYPE_CHECKING:
    from inferwatch.exporters.config import ExporterConfig

# node_exporter's default: whole disks only, no partitions, loop, ram or floppy devices.
DISK_IGNORE = re.compile(r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p|mmcblk\d+p)\d+$")
NET_IGNORE = re.compile(r"^(lo|veth.*|cali.*|docker\d+|br-.*)$")
MAX_DEVICES = 32
DEFAULT_GROWTH_WINDOW = 600.0
# Modes psutil reports on Linux; guest time is already included in user/nice, so it is
# left out rather than counted twice.
CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")

CPU_SECONDS = Descriptor(
    "inferwatch_host_cpu_seconds_total",
    "counter",
    "CPU time spent in each mode, all CPUs.",
    ("mode",),
)
CPUS = Descriptor("inferwatch_host_cpus", "gauge", "Logical CPUs.")
CPU_USAGE = Descriptor(
    "inferwatch_host_cpu_usage_ratio",
    "gauge",
    "Share of CPU time not idle since the previous scrape (0-1).",
)
LOAD_AVERAGE = Descriptor(
    "inferwatch_host_load_average", "gauge", "System load average.", ("period",)
)
MEMORY_TOTAL = Descriptor("inferwatch_host_memory_total_bytes", "gauge", "Physical memory.")
MEMORY_AVAILABLE = Descriptor(
    "inferwatch_host_memory_available_bytes",
    "gauge",
    "Memory available to new processes without swapping.",
)
MEMORY_USED = Descriptor(
    "inferwatch_host_memory_used_bytes", "gauge", "Physical memory in use (total - available)."
)
PROCESS_RESIDENT = Descriptor(
    "inferwatch_process_resident_memory_bytes",
    "gauge",
    "Resident memory of the watched processes, summed (shared pages count per process).",
)
PROCESS_VIRTUAL = Descriptor(
    "inferwatch_process_virtual_memory_bytes",
    "gauge",
    "Virtual memory of the watched processes, summed.",
)
PROCESS_WATCHED = Descriptor(
    "inferwatch_process_watched", "gauge", "Watched processes currently alive."
)
# The help names the configured window; the declaration shows the default one.
GROWTH_HELP = (
    "Slope of the watched processes' resident memory over the last {window}s of scrapes; "
    "persistently > 0 suggests a leak."
)
PROCESS_GROWTH = Descriptor(
    "inferwatch_process_resident_memory_growth_bytes_per_second",
    "gauge",
    GROWTH_HELP.format(window=f"{DEFAULT_GROWTH_WINDOW:g}"),
)
# HostSource.disk_io() counter -> the metric it becomes, per disk.
DISK_COUNTERS: tuple[tuple[str, Descriptor], ...] = (
    ("read_bytes", Descriptor("inferwatch_host_disk_read_bytes_total", "counter",
     "Bytes read.", ("device",))),
    ("write_bytes", Descriptor("inferwatch_host_disk_written_bytes_total", "counter",
     "Bytes written.", ("device",))),
    ("read_count", Descriptor("inferwatch_host_disk_reads_completed_total", "counter",
     "Reads completed.", ("device",))),
    ("write_count", Descriptor("inferwatch_host_disk_writes_completed_total", "counter",
     "Writes completed.", ("device",))),
)  # fmt: skip
# HostSource.net_io() counter -> the metric it becomes, per interface.
NETWORK_COUNTERS: tuple[tuple[str, Descriptor], ...] = (
    ("bytes_recv", Descriptor("inferwatch_host_network_receive_bytes_total", "counter",
     "Bytes received.", ("device",))),
    ("bytes_sent", Descriptor("inferwatch_host_network_transmit_bytes_total", "counter",
     "Bytes sent.", ("device",))),
    ("packets_recv", Descriptor("inferwatch_host_network_receive_packets_total", "counter",
     "Packets received.", ("device",))),
    ("packets_sent", Descriptor("inferwatch_host_network_transmit_packets_total", "counter",
     "Packets sent.", ("device",))),
    ("errin", Descriptor("inferwatch_host_network_receive_errors_total", "counter",
     "Receive errors.", ("device",))),
    ("errout", Descriptor("inferwatch_host_network_transmit_errors_total", "counter",
     "Transmit errors.", ("device",))),
    ("dropin", Descriptor("inferwatch_host_network_receive_drops_total", "counter",
     "Incoming packets dropped.", ("device",))),
    ("dropout", Descriptor("inferwatch_host_network_transmit_drops_total", "counter",
     "Outgoing packets dropped.", ("device",))),
)  # fmt: skip
METRICS = (
    CPU_SECONDS,
    CPUS,
    CPU_USAGE,
    LOAD_AVERAGE,
    MEMORY_TOTAL,
    MEMORY_AVAILABLE,
    MEMORY_USED,
    PROCESS_RESIDENT,
    PROCESS_VIRTUAL,
    PROCESS_WATCHED,
    PROCESS_GROWTH,
    *(descriptor for _, descriptor in DISK_COUNTERS),
    *(descriptor for _, descriptor in NETWORK_COUNTERS),
)


def process_tree(root: int) -> list[psutil.Process]:
    """``root`` and its descendants that still exist."""
    try:
        proc = psutil.Process(root)
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return []


def slope(samples: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (t, value) samples: value units per second."""
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    if var == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in samples) / var


class MemoryGrowth:
    """A sliding window of (time, bytes) samples and its slope."""

    def __init__(self, window: float = 600.0, min_span: float = 60.0) -> None:
        if window <= 0 or not 0 < min_span <= window:
            raise ValueError("need window > 0 and 0 < min_span <= window")
        self.window = window
        self.min_span = min_span
        # Thinned to one sample per window/256 s, so memory stays bounded at any scrape rate.
        self._samples: collections.deque[tuple[float, float]] = collections.deque(maxlen=257)
        self._lock = threading.Lock()

    def add(self, t: float, value: float) -> float | None:
        """Record a sample; return the slope, or None while the window is too short."""
        with self._lock:
            if self._samples and t < self._samples[-1][0]:
                self._samples.clear()  # clock went backwards: start again
            if not self._samples or t - self._samples[-1][0] >= self.window / 256:
                self._samples.append((t, value))
            while self._samples and t - self._samples[0][0] > self.window:
                self._samples.popleft()
            if len(self._samples) < 2 or t - self._samples[0][0] < self.min_span:
                return None
            return slope(self._samples)


class HostSource(Protocol):
    """Where the host collector reads the host: psutil by default (:class:`PsutilSource`);
    a test hands it fixture readings and compares the exposition exactly, as node_exporter's
    tests do with a fixture ``/proc``."""

    def cpu_times(self) -> Mapping[str, float]:
        """Seconds spent in each mode of :data:`CPU_MODES` the host reports, all CPUs."""
        ...

    def cpu_count(self) -> int:
        """Logical CPUs (0 when unknown)."""
        ...

    def load_average(self) -> tuple[float, float, float]:
        """The 1, 5 and 15 minute load averages."""
        ...

    def memory(self) -> tuple[int, int]:
        """Physical memory in bytes: (total, available)."""
        ...

    def process_memory(self, root: int) -> list[tuple[int, int]]:
        """(resident, virtual) bytes of ``root`` and each descendant still alive."""
        ...

    def disk_io(self) -> Mapping[str, Mapping[str, int]]:
        """Per disk: the counters named in :data:`DISK_COUNTERS`."""
        ...

    def net_io(self) -> Mapping[str, Mapping[str, int]]:
        """Per interface: the counters named in :data:`NETWORK_COUNTERS`."""
        ...


class PsutilSource:
    """The host as psutil reads it (``/proc`` and ``/sys`` on Linux)."""

    def cpu_times(self) -> dict[str, float]:
        times = psutil.cpu_times()
        return {mode: getattr(times, mode) for mode in CPU_MODES if hasattr(times, mode)}

    def cpu_count(self) -> int:
        return psutil.cpu_count() or 0

    def load_average(self) -> tuple[float, float, float]:
        one, five, fifteen = psutil.getloadavg()
        return one, five, fifteen

    def memory(self) -> tuple[int, int]:
        mem = psutil.virtual_memory()
        return mem.total, mem.available

    def process_memory(self, root: int) -> list[tuple[int, int]]:
        found = []
        for proc in process_tree(root):
            try:
                info = proc.memory_info()
            except psutil.Error:
                continue  # exited between listing and reading
            found.append((info.rss, info.vms))
        return found

    def disk_io(self) -> dict[str, dict[str, int]]:
        return _counters(psutil.disk_io_counters(perdisk=True))

    def net_io(self) -> dict[str, dict[str, int]]:
        return _counters(psutil.net_io_counters(pernic=True))


def _counters(per_device: dict[str, Any] | None) -> dict[str, dict[str, int]]:
    # psutil returns None (not {}) where the host has no such devices or hides them.
    return {name: dict(counters._asdict()) for name, counters in (per_device or {}).items()}


class HostCollector:
    name = "host"

    def __init__(
        self,
        *,
        pids: Sequence[int] = (),
        growth_window: float = DEFAULT_GROWTH_WINDOW,
        growth_min_span: float = 60.0,
        max_devices: int = MAX_DEVICES,
        clock: Callable[[], float] = time.monotonic,
        source: HostSource | None = None,
    ) -> None:
        self.roots = tuple(pids) or (os.getpid(),)
        self.growth = MemoryGrowth(growth_window, growth_min_span)
        self.max_devices = max_devices
        self.source: HostSource = PsutilSource() if source is None else source
        self._clock = clock
        self._last_cpu: Mapping[str, float] | None = None
        self._growth_help = GROWTH_HELP.format(window=f"{growth_window:g}")

    def collect(self) -> Iterator[Metric]:
        yield from self._cpu()
        yield from self._memory()
        yield from self._process()
        yield from self._disks()
        yield from self._network()

    def _cpu(self) -> Iterator[Metric]:
        times = self.source.cpu_times()
        seconds = CPU_SECONDS.family()
        for mode in CPU_MODES:
            if mode in times:
                seconds.add_metric([mode], times[mode])
        yield seconds
        yield CPUS.family(self.source.cpu_count())
        previous, self._last_cpu = self._last_cpu, times
        if previous is not None:
            # Usage since the previous scrape; absent on the first one rather than a fake 0.
            total = sum(times.get(m, 0) - previous.get(m, 0) for m in CPU_MODES)
            idle = sum(times.get(m, 0) - previous.get(m, 0) for m in ("idle", "iowait"))
            if total > 0:
                yield CPU_USAGE.family(max(0.0, min(1.0, 1 - idle / total)))
        load = LOAD_AVERAGE.family()
        for period, value in zip(("1m", "5m", "15m"), self.source.load_average(), strict=True):
            load.add_metric([period], value)
        yield load

    def _memory(self) -> Iterator[Metric]:
        total, available = self.source.memory()
        yield MEMORY_TOTAL.family(total)
        yield MEMORY_AVAILABLE.family(available)
        yield MEMORY_USED.family(total - available)

    def _process(self) -> Iterator[Metric]:
        rss = vms = 0
        count = 0
        for root in self.roots:
            for resident, virtual in self.source.process_memory(root):
                rss += resident
                vms += virtual
                count += 1
        if count == 0:
            return  # nothing watched is alive: no series rather than zeros
        yield PROCESS_RESIDENT.family(rss)
        yield PROCESS_VIRTUAL.family(vms)
        yield PROCESS_WATCHED.family(count)
        growth = self.growth.add(self._clock(), float(rss))
        if growth is not None:
            yield PROCESS_GROWTH.family(growth, help=self._growth_help)

    def _bounded(self, names: Iterable[str], ignore: re.Pattern[str]) -> list[str]:
        return sorted(n for n in names if not ignore.match(n))[: self.max_devices]

    def _disks(self) -> Iterator[Metric]:
        counters = self.source.disk_io()
        yield from _per_device(counters, self._bounded(counters, DISK_IGNORE), DISK_COUNTERS)

    def _network(self) -> Iterator[Metric]:
        counters = self.source.net_io()
        yield from _per_device(counters, self._bounded(counters, NET_IGNORE), NETWORK_COUNTERS)


def _per_device(
    counters: Mapping[str, Mapping[str, int]],
    devices: list[str],
    specs: Iterable[tuple[str, Descriptor]],
) -> Iterator[Metric]:
    for attr, descriptor in specs:
        family = descriptor.family()
        for device in devices:
            family.add_metric([device], counters[device][attr])
        yield from non_empty([family])


def build(config: ExporterConfig) -> HostCollector:
    return HostCollector(
        pids=config.pids,
        growth_window=config.memory_growth_window,
        # half the window: a span of the whole window is never reached between scrapes
        growth_min_span=min(60.0, config.memory_growth_window / 2),
    )
