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
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import psutil
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from inferwatch.exporters.config import ExporterConfig

# node_exporter's default: whole disks only, no partitions, loop, ram or floppy devices.
DISK_IGNORE = re.compile(r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p|mmcblk\d+p)\d+$")
NET_IGNORE = re.compile(r"^(lo|veth.*|cali.*|docker\d+|br-.*)$")
MAX_DEVICES = 32
# Modes psutil reports on Linux; guest time is already included in user/nice, so it is
# left out rather than counted twice.
_CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


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


class HostCollector:
    name = "host"

    def __init__(
        self,
        *,
        pids: Sequence[int] = (),
        growth_window: float = 600.0,
        growth_min_span: float = 60.0,
        max_devices: int = MAX_DEVICES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.roots = tuple(pids) or (os.getpid(),)
        self.growth = MemoryGrowth(growth_window, growth_min_span)
        self.max_devices = max_devices
        self._clock = clock
        self._last_cpu: Any = None  # psutil's scputimes named tuple

    def collect(self) -> Iterator[Metric]:
        yield from self._cpu()
        yield from self._memory()
        yield from self._process()
        yield from self._disks()
        yield from self._network()

    def _cpu(self) -> Iterator[Metric]:
        times = psutil.cpu_times()
        seconds = CounterMetricFamily(
            "inferwatch_host_cpu_seconds", "CPU time spent in each mode, all CPUs.", labels=["mode"]
        )
        for mode in _CPU_MODES:
            if hasattr(times, mode):
                seconds.add_metric([mode], getattr(times, mode))
        yield seconds
        yield GaugeMetricFamily(
            "inferwatch_host_cpus", "Logical CPUs.", value=psutil.cpu_count() or 0
        )
        previous, self._last_cpu = self._last_cpu, times
        if previous is not None:
            # Usage since the previous scrape; absent on the first one rather than a fake 0.
            total = sum(getattr(times, m, 0) - getattr(previous, m, 0) for m in _CPU_MODES)
            idle = sum(getattr(times, m, 0) - getattr(previous, m, 0) for m in ("idle", "iowait"))
            if total > 0:
                yield GaugeMetricFamily(
                    "inferwatch_host_cpu_usage_ratio",
                    "Share of CPU time not idle since the previous scrape (0-1).",
                    value=max(0.0, min(1.0, 1 - idle / total)),
                )
        load = GaugeMetricFamily(
            "inferwatch_host_load_average", "System load average.", labels=["period"]
        )
        for period, value in zip(("1m", "5m", "15m"), psutil.getloadavg(), strict=True):
            load.add_metric([period], value)
        yield load

    def _memory(self) -> Iterator[Metric]:
        mem = psutil.virtual_memory()
        for what, value, doc in (
            ("total", mem.total, "Physical memory."),
            ("available", mem.available, "Memory available to new processes without swapping."),
            ("used", mem.total - mem.available, "Physical memory in use (total - available)."),
        ):
            yield GaugeMetricFamily(f"inferwatch_host_memory_{what}_bytes", doc, value=value)

    def _process(self) -> Iterator[Metric]:
        rss = vms = 0
        count = 0
        for root in self.roots:
            for proc in process_tree(root):
                try:
                    info = proc.memory_info()
                except psutil.Error:
                    continue  # exited between listing and reading
                rss += info.rss
                vms += info.vms
                count += 1
        if count == 0:
            return  # nothing watched is alive: no series rather than zeros
        yield GaugeMetricFamily(
            "inferwatch_process_resident_memory_bytes",
            "Resident memory of the watched processes, summed (shared pages count per process).",
            value=rss,
        )
        yield GaugeMetricFamily(
            "inferwatch_process_virtual_memory_bytes",
            "Virtual memory of the watched processes, summed.",
            value=vms,
        )
        yield GaugeMetricFamily(
            "inferwatch_process_watched", "Watched processes currently alive.", value=count
        )
        growth = self.growth.add(self._clock(), float(rss))
        if growth is not None:
            yield GaugeMetricFamily(
                "inferwatch_process_resident_memory_growth_bytes_per_second",
                f"Slope of the watched processes' resident memory over the last "
                f"{self.growth.window:g}s of scrapes; persistently > 0 suggests a leak.",
                value=growth,
            )

    def _bounded(self, names: Iterable[str], ignore: re.Pattern[str]) -> list[str]:
        return sorted(n for n in names if not ignore.match(n))[: self.max_devices]

    def _disks(self) -> Iterator[Metric]:
        counters = psutil.disk_io_counters(perdisk=True) or {}
        specs = (
            ("read_bytes", "inferwatch_host_disk_read_bytes", "Bytes read."),
            ("write_bytes", "inferwatch_host_disk_written_bytes", "Bytes written."),
            ("read_count", "inferwatch_host_disk_reads_completed", "Reads completed."),
            ("write_count", "inferwatch_host_disk_writes_completed", "Writes completed."),
        )
        yield from _per_device(counters, self._bounded(counters, DISK_IGNORE), specs)

    def _network(self) -> Iterator[Metric]:
        counters = psutil.net_io_counters(pernic=True) or {}
        specs = (
            ("bytes_recv", "inferwatch_host_network_receive_bytes", "Bytes received."),
            ("bytes_sent", "inferwatch_host_network_transmit_bytes", "Bytes sent."),
            ("packets_recv", "inferwatch_host_network_receive_packets", "Packets received."),
            ("packets_sent", "inferwatch_host_network_transmit_packets", "Packets sent."),
            ("errin", "inferwatch_host_network_receive_errors", "Receive errors."),
            ("errout", "inferwatch_host_network_transmit_errors", "Transmit errors."),
            ("dropin", "inferwatch_host_network_receive_drops", "Incoming packets dropped."),
            ("dropout", "inferwatch_host_network_transmit_drops", "Outgoing packets dropped."),
        )
        yield from _per_device(counters, self._bounded(counters, NET_IGNORE), specs)


def _per_device(
    counters: dict[str, object], devices: list[str], specs: Iterable[tuple[str, str, str]]
) -> Iterator[Metric]:
    for attr, name, doc in specs:
        family = CounterMetricFamily(name, doc, labels=["device"])
        for device in devices:
            family.add_metric([device], getattr(counters[device], attr))
        if family.samples:
            yield family


def build(config: ExporterConfig) -> HostCollector:
    return HostCollector(
        pids=config.pids,
        growth_window=config.memory_growth_window,
        # half the window: a span of the whole window is never reached between scrapes
        growth_min_span=min(60.0, config.memory_growth_window / 2),
    )
