"""Process metrics of a multiprocess service: every live worker's, summed.

prometheus_client's ``ProcessCollector`` describes the one process it runs in, and its
multiprocess collector has no process metrics at all: behind ``uvicorn --workers N`` a
scrape would show nothing, or one worker picked by the load balancer. The memory-leak alert
and the dashboards need the service's whole footprint, so :class:`WorkersProcessCollector`
exposes the same names (``process_resident_memory_bytes``, ``process_virtual_memory_bytes``)
summed over the workers that still run: those with a metrics file in the multiprocess
directory (``<type>[_<mode>]_<pid>.db``) whose pid is alive. Dead workers' files are left to
the compaction that folds them away, and a reused pid is counted once, like any live one.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator

import psutil
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

_PID = re.compile(r"_(\d+)\.db$")


def worker_pids(path: str) -> list[int]:
    """The pids of the live processes that write metrics into ``path``, ascending."""
    pids = set()
    for name in glob.glob(os.path.join(path, "*.db")):
        found = _PID.search(os.path.basename(name))
        if found:
            pids.add(int(found.group(1)))
    return sorted(pid for pid in pids if psutil.pid_exists(pid))


class WorkersProcessCollector:
    """``process_*_memory_bytes`` summed over the live workers of a multiprocess directory."""

    def __init__(self, path: str, registry: CollectorRegistry | None = None) -> None:
        self.path = path
        if registry is not None:
            registry.register(self)

    def collect(self) -> Iterator[Metric]:
        rss = vms = 0
        alive = 0
        for pid in worker_pids(self.path):
            try:
                info = psutil.Process(pid).memory_info()
            except psutil.Error:
                continue  # exited since the listing, or not ours to read
            rss += info.rss
            vms += info.vms
            alive += 1
        if not alive:
            return  # no live worker: no series rather than a misleading zero
        yield GaugeMetricFamily(
            "process_resident_memory_bytes",
            "Resident memory size in bytes, summed over the service's live workers.",
            value=rss,
        )
        yield GaugeMetricFamily(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes, summed over the service's live workers.",
            value=vms,
        )
        yield GaugeMetricFamily(
            "inferwatch_multiprocess_workers",
            "Live worker processes whose metrics this scrape merged.",
            value=alive,
        )
