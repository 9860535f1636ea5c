"""NVIDIA GPU metrics via NVML (the ``nvidia-ml-py`` package, module ``pynvml``).

Per GPU (labels ``gpu`` = NVML index and ``uuid``): utilization, memory, temperature, power
and its limit, clocks, clock-throttle reasons, video encoder/decoder utilization, ECC and XID
error counters, and the GPU memory held by the watched service's processes. Values are in
Prometheus base units: ratios 0-1 (NVML reports percent), watts (NVML: milliwatts), hertz
(NVML: MHz), bytes.

Failure handling, so that monitoring never hurts the monitored:

* NVML is initialised lazily, on the first scrape. When the library or driver is missing,
  or a call reports a lifecycle error (uninitialised, driver not loaded, library not found),
  the collector emits no GPU series at all (no zeros), fails (``success 0``), shuts NVML
  down and re-initialises on a later scrape with exponential backoff.
* A field one GPU does not support (``NVMLError_NotSupported``, no permission, a function an
  old driver lacks) is omitted for that GPU only.
* A GPU that reports ``NVMLError_GpuIsLost`` (fallen off the bus, unplugged) loses all its
  series while the other GPUs keep theirs; the collector reports failure and re-enumerates
  the devices (shutdown + init, with backoff) so a reset GPU comes back.
* A call that hangs is bounded by the runner's collector timeout (see ``collector.py``).

XID errors come from NVML events (``nvmlEventTypeXidCriticalError``), drained without waiting
at each scrape: ``inferwatch_gpu_xid_errors_total`` counts XIDs seen since this process
started watching the GPU, and is absent where the driver does not deliver XID events (for
instance without the needed privileges). The XID code itself is in the kernel log.

Verification: the tests drive this collector through a simulated NVML (tests/fakes) that
returns pynvml's real structures and raises its real error classes; verification on real
GPU hardware is still pending.

One poller per host: NVML should be polled by one process, not by every worker of a
multi-worker service. Run this collector in the standalone exporter (``inferwatch exporter``,
one process per host).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from inferwatch.exporters.collector import CollectorError
from inferwatch.exporters.descriptors import Descriptor, non_empty
from inferwatch.exporters.host import process_tree

if TYPE_CHECKING:
    from inferwatch.exporters.config import ExporterConfig

log = logging.getLogger(__name__)

# NVML clock types (nvmlClockType_t) -> label value.
CLOCKS = {"graphics": 0, "sm": 1, "memory": 2, "video": 3}
# nvmlClocksThrottleReason* bits (stable NVML ABI) -> label value; bounded on purpose.
THROTTLE_REASONS = {
    "gpu_idle": 0x1,
    "applications_clocks_setting": 0x2,
    "sw_power_cap": 0x4,
    "hw_slowdown": 0x8,
    "sync_boost": 0x10,
    "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40,
    "hw_power_brake_slowdown": 0x80,
    "display_clock_setting": 0x100,
}
ECC_TYPES = {"corrected": 0, "uncorrected": 1}  # nvmlMemoryErrorType_t
_VOLATILE_ECC = 0  # NVML_VOLATILE_ECC: counts since the driver loaded, updated immediately
_TEMPERATURE_GPU = 0  # NVML_TEMPERATURE_GPU
_XID_EVENT = 0x8  # nvmlEventTypeXidCriticalError
_MAX_EVENTS_PER_SCRAPE = 256
_LIFECYCLE_ERRORS = ("Uninitialized", "DriverNotLoaded", "LibraryNotFound", "LibRmVersionMismatch")
# Errors that mean "this GPU cannot give this field": omit the field, not a failure.
_ABSENT_ERRORS = ("NotSupported", "NoPermission", "FunctionNotFound", "NoData", "NotFound")

# Every GPU metric is labelled with the NVML index and the UUID of its GPU.
_GPU = ("gpu", "uuid")
INFO = Descriptor(
    "inferwatch_gpu_info", "gauge", "GPU identity; always 1.", (*_GPU, "name", "driver_version")
)
# _Reading.gauges key -> the metric it becomes.
GAUGES: tuple[tuple[str, Descriptor], ...] = (
    ("utilization", Descriptor("inferwatch_gpu_utilization_ratio", "gauge",
     "Time a kernel was running (0-1).", _GPU)),
    ("memory_utilization", Descriptor("inferwatch_gpu_memory_utilization_ratio", "gauge",
     "Time device memory was being read or written (0-1).", _GPU)),
    ("memory_used", Descriptor("inferwatch_gpu_memory_used_bytes", "gauge",
     "Device memory in use.", _GPU)),
    ("memory_total", Descriptor("inferwatch_gpu_memory_total_bytes", "gauge",
     "Device memory installed.", _GPU)),
    ("temperature", Descriptor("inferwatch_gpu_temperature_celsius", "gauge",
     "GPU core temperature.", _GPU)),
    ("power", Descriptor("inferwatch_gpu_power_watts", "gauge", "Power draw.", _GPU)),
    ("power_limit", Descriptor("inferwatch_gpu_power_limit_watts", "gauge",
     "Enforced power limit.", _GPU)),
    ("encoder", Descriptor("inferwatch_gpu_encoder_utilization_ratio", "gauge",
     "Video encoder busy (0-1).", _GPU)),
    ("decoder", Descriptor("inferwatch_gpu_decoder_utilization_ratio", "gauge",
     "Video decoder busy (0-1).", _GPU)),
)  # fmt: skip
CLOCK = Descriptor("inferwatch_gpu_clock_hertz", "gauge", "Current clock speed.", (*_GPU, "clock"))
THROTTLE = Descriptor(
    "inferwatch_gpu_throttle_reasons",
    "gauge",
    "1 while this reason is holding the clocks down (gpu_idle is benign).",
    (*_GPU, "reason"),
)
ECC_ERRORS = Descriptor(
    "inferwatch_gpu_ecc_errors_total",
    "counter",
    "Memory ECC errors since the driver loaded (volatile counters).",
    (*_GPU, "type"),
)
XID_ERRORS = Descriptor(
    "inferwatch_gpu_xid_errors_total",
    "counter",
    "XID critical errors reported by the driver since this exporter started watching.",
    _GPU,
)
PROCESS_MEMORY = Descriptor(
    "inferwatch_gpu_process_memory_used_bytes",
    "gauge",
    "Device memory used by the watched service's processes.",
    _GPU,
)
METRICS = (
    INFO,
    *(descriptor for _, descriptor in GAUGES),
    CLOCK,
    THROTTLE,
    ECC_ERRORS,
    XID_ERRORS,
    PROCESS_MEMORY,
)


def _load() -> ModuleType:
    try:
        import pynvml  # type: ignore[import-untyped]  # nvidia-ml-py ships no type information
    except ImportError:
        raise CollectorError(
            "nvidia-ml-py is not installed (pip install inferwatch[gpu])"
        ) from None
    module: ModuleType = pynvml
    return module


def _errors(nvml: ModuleType, names: Sequence[str]) -> tuple[type[Exception], ...]:
    return tuple(getattr(nvml, f"NVMLError_{n}") for n in names if hasattr(nvml, f"NVMLError_{n}"))


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


@dataclass
class _Reading:
    index: int
    uuid: str
    name: str
    gauges: dict[str, float] = field(default_factory=dict)
    clocks: dict[str, float] = field(default_factory=dict)
    throttle: int | None = None
    ecc: dict[str, float] = field(default_factory=dict)
    xid: int | None = None
    service_memory: float | None = None


class GpuCollector:
    name = "gpu"

    def __init__(
        self,
        *,
        pids: Sequence[int] = (),
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``pids``: the service's processes (each with its descendants) whose GPU memory is
        reported as ``inferwatch_gpu_process_memory_used_bytes``; none means not reported."""
        self.pids = tuple(pids)
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._clock = clock
        self._initialized = False
        self._reinit_wanted = False
        self._retry_at = 0.0
        self._delay = backoff_initial
        self._last_error = ""
        self._event_set: Any = None
        self._xid_registered: set[str] = set()
        self._xid_unsupported: set[str] = set()
        self._xid_counts: dict[str, int] = {}

    # -- NVML lifecycle -------------------------------------------------------------------

    def _backoff(self) -> None:
        self._retry_at = self._clock() + self._delay
        self._delay = min(max(self._delay * 2, 0.5), self.backoff_max)

    def _ensure_initialized(self, nvml: ModuleType) -> None:
        now = self._clock()
        if self._initialized and not (self._reinit_wanted and now >= self._retry_at):
            return
        if not self._initialized and now < self._retry_at:
            raise CollectorError(
                f"NVML unavailable ({self._last_error}); retrying in {self._retry_at - now:.0f}s"
            )
        if self._initialized:
            self._shutdown(nvml)
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            self._last_error = str(exc)
            self._backoff()
            raise CollectorError(f"NVML init failed: {exc}") from None
        self._initialized = True
        self._reinit_wanted = False
        try:
            self._event_set = nvml.nvmlEventSetCreate()
        except nvml.NVMLError as exc:
            log.debug("NVML events unavailable, no XID counts: %s", exc)
            self._event_set = None

    def _shutdown(self, nvml: ModuleType) -> None:
        # Best effort: after a lifecycle error these calls may fail too.
        if self._event_set is not None:
            with contextlib.suppress(nvml.NVMLError):
                nvml.nvmlEventSetFree(self._event_set)
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()
        self._event_set = None
        self._xid_registered.clear()
        self._initialized = False

    def close(self) -> None:
        if self._initialized:
            self._shutdown(_load())

    # -- collection -----------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        nvml = _load()
        self._ensure_initialized(nvml)
        lifecycle = _errors(nvml, _LIFECYCLE_ERRORS)
        lost: list[int] = []
        problems: list[str] = []
        try:
            driver = self._field(nvml, problems, nvml.nvmlSystemGetDriverVersion)
            count = nvml.nvmlDeviceGetCount()
            service = self._service_pids()
            readings = []
            for index in range(count):
                try:
                    reading = self._read(nvml, index, service, problems)
                except nvml.NVMLError_GpuIsLost:
                    lost.append(index)
                    continue
                if reading is not None:
                    readings.append(reading)
            self._drain_xid_events(nvml)
        except (*lifecycle, nvml.NVMLError_GpuIsLost) as exc:
            # No partial output: everything read so far may belong to a dying NVML session.
            self._last_error = str(exc)
            self._shutdown(nvml)
            self._backoff()
            raise CollectorError(f"NVML lifecycle error, will re-initialise: {exc}") from None
        for reading in readings:
            if reading.uuid in self._xid_registered:
                reading.xid = self._xid_counts.get(reading.uuid, 0)
        yield from _families(readings, _text(driver) if driver is not None else "")
        if lost:
            self._reinit_wanted = True
            self._backoff()
            raise CollectorError(f"GPU(s) {lost} lost; their series are dropped")
        self._delay = self.backoff_initial
        if problems:
            raise CollectorError("; ".join(problems))

    def _service_pids(self) -> set[int]:
        return {p.pid for root in self.pids for p in process_tree(root)}

    def _field(self, nvml: ModuleType, problems: list[str], fn: Any, *args: Any) -> Any:
        """``fn(*args)``, or None when this GPU cannot provide it. Lost-GPU and lifecycle
        errors propagate; any other NVML error omits the field and fails the collection."""
        try:
            return fn(*args)
        except _errors(nvml, _ABSENT_ERRORS):
            return None
        except (*_errors(nvml, _LIFECYCLE_ERRORS), nvml.NVMLError_GpuIsLost):
            raise
        except nvml.NVMLError as exc:
            problems.append(f"{getattr(fn, '__name__', 'nvml call')}: {exc}")
            return None

    def _read(
        self, nvml: ModuleType, index: int, service: set[int], problems: list[str]
    ) -> _Reading | None:
        handle = self._field(nvml, problems, nvml.nvmlDeviceGetHandleByIndex, index)
        if handle is None:
            return None
        uuid = self._field(nvml, problems, nvml.nvmlDeviceGetUUID, handle)
        if not uuid:
            return None  # cannot label it: skip the device (already counted as a problem)
        name = self._field(nvml, problems, nvml.nvmlDeviceGetName, handle)
        r = _Reading(index, _text(uuid), _text(name) if name is not None else "")

        def get(fn: Any, *args: Any) -> Any:
            return self._field(nvml, problems, fn, handle, *args)

        util = get(nvml.nvmlDeviceGetUtilizationRates)
        if util is not None:
            r.gauges["utilization"] = util.gpu / 100
            r.gauges["memory_utilization"] = util.memory / 100
        memory = get(nvml.nvmlDeviceGetMemoryInfo)
        if memory is not None:
            r.gauges["memory_used"] = float(memory.used)
            r.gauges["memory_total"] = float(memory.total)
        # nvmlDeviceGetTemperature is deprecated for nvmlDeviceGetTemperatureV, which drivers
        # before R535 lack; the old call works on every driver in use today.
        temperature = get(nvml.nvmlDeviceGetTemperature, _TEMPERATURE_GPU)
        if temperature is not None:
            r.gauges["temperature"] = float(temperature)
        power = get(nvml.nvmlDeviceGetPowerUsage)
        if power is not None:
            r.gauges["power"] = power / 1000
        limit = get(nvml.nvmlDeviceGetEnforcedPowerLimit)
        if limit is not None:
            r.gauges["power_limit"] = limit / 1000
        for label, clock_type in CLOCKS.items():
            mhz = get(nvml.nvmlDeviceGetClockInfo, clock_type)
            if mhz is not None:
                r.clocks[label] = mhz * 1e6
        r.throttle = get(nvml.nvmlDeviceGetCurrentClocksThrottleReasons)
        for key, fn in (
            ("encoder", nvml.nvmlDeviceGetEncoderUtilization),
            ("decoder", nvml.nvmlDeviceGetDecoderUtilization),
        ):
            value = get(fn)  # [utilization %, sampling period us]
            if value is not None:
                r.gauges[key] = value[0] / 100
        for label, error_type in ECC_TYPES.items():
            errors = get(nvml.nvmlDeviceGetTotalEccErrors, error_type, _VOLATILE_ECC)
            if errors is not None:
                r.ecc[label] = float(errors)
        if self.pids:
            r.service_memory = self._service_memory(nvml, handle, service, problems)
        self._register_xid(nvml, handle, r.uuid, problems)
        return r

    def _service_memory(
        self, nvml: ModuleType, handle: Any, service: set[int], problems: list[str]
    ) -> float | None:
        used: dict[int, int] = {}
        seen_any = False
        for fn in (
            nvml.nvmlDeviceGetComputeRunningProcesses,
            nvml.nvmlDeviceGetGraphicsRunningProcesses,
        ):
            procs = self._field(nvml, problems, fn, handle)
            if procs is None:
                continue
            seen_any = True
            for proc in procs:
                # usedGpuMemory is None where NVML cannot tell (WDDM, some MIG setups);
                # a process in both lists is counted once.
                if proc.pid in service and proc.usedGpuMemory is not None:
                    used[proc.pid] = max(used.get(proc.pid, 0), proc.usedGpuMemory)
        return float(sum(used.values())) if seen_any else None

    def _register_xid(self, nvml: ModuleType, handle: Any, uuid: str, problems: list[str]) -> None:
        if self._event_set is None or uuid in self._xid_registered | self._xid_unsupported:
            return
        try:
            nvml.nvmlDeviceRegisterEvents(handle, _XID_EVENT, self._event_set)
        except _errors(nvml, _ABSENT_ERRORS):
            self._xid_unsupported.add(uuid)
            return
        except (*_errors(nvml, _LIFECYCLE_ERRORS), nvml.NVMLError_GpuIsLost):
            raise
        except nvml.NVMLError as exc:
            problems.append(f"nvmlDeviceRegisterEvents: {exc}")
            return
        self._xid_registered.add(uuid)
        self._xid_counts.setdefault(uuid, 0)

    def _drain_xid_events(self, nvml: ModuleType) -> None:
        if self._event_set is None:
            return
        for _ in range(_MAX_EVENTS_PER_SCRAPE):
            try:
                event = nvml.nvmlEventSetWait(self._event_set, 0)  # 0 ms: never blocks
            except nvml.NVMLError_Timeout:
                return  # no pending events
            except _errors(nvml, _ABSENT_ERRORS):
                return
            if event.eventType & _XID_EVENT:
                try:
                    uuid = _text(nvml.nvmlDeviceGetUUID(event.device))
                except nvml.NVMLError:
                    continue
                self._xid_counts[uuid] = self._xid_counts.get(uuid, 0) + 1


def _families(readings: list[_Reading], driver: str) -> Iterator[Metric]:
    def ids(r: _Reading) -> list[str]:
        return [str(r.index), r.uuid]

    info = INFO.family()
    for r in readings:
        info.add_metric([*ids(r), r.name, driver], 1)
    yield from non_empty([info])

    for key, descriptor in GAUGES:
        family = descriptor.family()
        for r in readings:
            if key in r.gauges:
                family.add_metric(ids(r), r.gauges[key])
        yield from non_empty([family])

    clocks, throttle, ecc = CLOCK.family(), THROTTLE.family(), ECC_ERRORS.family()
    xid, service = XID_ERRORS.family(), PROCESS_MEMORY.family()
    for r in readings:
        for clock, hz in r.clocks.items():
            clocks.add_metric([*ids(r), clock], hz)
        if r.throttle is not None:
            for reason, bit in THROTTLE_REASONS.items():
                throttle.add_metric([*ids(r), reason], 1.0 if r.throttle & bit else 0.0)
        for kind, count in r.ecc.items():
            ecc.add_metric([*ids(r), kind], count)
        if r.xid is not None:
            xid.add_metric(ids(r), r.xid)
        if r.service_memory is not None:
            service.add_metric(ids(r), r.service_memory)
    yield from non_empty([clocks, throttle, ecc, xid, service])


def build(config: ExporterConfig) -> GpuCollector:
    return GpuCollector(pids=config.pids)
