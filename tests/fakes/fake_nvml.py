"""A simulated NVML for tests on machines without an NVIDIA GPU.

This is a simulation, not a driver: :meth:`FakeNvml.install` replaces the ``pynvml``
functions the GPU collector calls (the library boundary), so the collector's own code runs
unchanged. Values have the real shapes: the ctypes structs pynvml returns
(``c_nvmlMemory_t`` with ``.total/.free/.used``, ``c_nvmlUtilization_t`` with
``.gpu/.memory``), milliwatts, MHz, ``[utilization %, sampling period]`` lists, and
``nvmlFriendlyObject`` process records. Errors are pynvml's real classes, made the way pynvml
makes them: ``pynvml.NVMLError(code)`` returns the subclass for that code.

Scenarios: no library or no driver, a GPU lost mid-run, a call that hangs until released, a
field a GPU does not support, one-off failures of any call, and XID events.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pynvml

GIB = 1024**3


def nvml_error(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)


@dataclass
class FakeGpu:
    uuid: str
    name: str = "NVIDIA A100-SXM4-40GB"
    utilization: int = 37  # percent, as NVML reports it
    memory_utilization: int = 12
    memory_total: int = 16 * GIB
    memory_used: int = 1 * GIB
    temperature: int = 61  # Celsius
    power_mw: int = 187_500
    power_limit_mw: int = 400_000
    clocks_mhz: dict[int, int] = field(
        default_factory=lambda: {
            pynvml.NVML_CLOCK_GRAPHICS: 1410,
            pynvml.NVML_CLOCK_SM: 1410,
            pynvml.NVML_CLOCK_MEM: 1215,
            pynvml.NVML_CLOCK_VIDEO: 1275,
        }
    )
    throttle_reasons: int = (
        pynvml.nvmlClocksThrottleReasonSwPowerCap | pynvml.nvmlClocksThrottleReasonHwSlowdown
    )
    encoder: int = 5
    decoder: int = 40
    ecc: dict[int, int] = field(
        default_factory=lambda: {
            pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED: 3,
            pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED: 0,
        }
    )
    # (pid, bytes) of compute processes; bytes None where NVML cannot tell
    processes: list[tuple[int, int | None]] = field(default_factory=list)
    unsupported: set[str] = field(default_factory=set)  # pynvml function names
    lost: bool = False


@dataclass(frozen=True)
class _Handle:
    index: int


class FakeNvml:
    def __init__(self, gpus: list[FakeGpu], *, driver_version: str = "550.54.15") -> None:
        self.gpus = gpus
        self.driver_version = driver_version
        self.missing: int | None = None  # an NVML_ERROR_* code nvmlInit raises
        self.initialized = False
        self.init_calls = 0
        self.calls = 0
        self._lock = threading.Lock()
        self._hangs: dict[str, threading.Event] = {}
        self._fail_once: dict[str, int] = {}
        self._events: list[tuple[int, int]] = []  # (gpu index, xid)
        self.entered = threading.Event()  # set when a hanging call starts blocking

    # -- scenario controls -------------------------------------------------------------

    def remove_library(self) -> None:
        self.missing = pynvml.NVML_ERROR_LIBRARY_NOT_FOUND

    def unload_driver(self) -> None:
        self.missing = pynvml.NVML_ERROR_DRIVER_NOT_LOADED
        self.initialized = False

    def restore(self) -> None:
        self.missing = None

    def hang(self, function: str) -> threading.Event:
        """Make ``function`` block until the returned event is set."""
        release = threading.Event()
        self._hangs[function] = release
        return release

    def fail_once(self, function: str, code: int) -> None:
        self._fail_once[function] = code

    def xid(self, index: int, code: int) -> None:
        self._events.append((index, code))

    # -- the boundary --------------------------------------------------------------------

    def _enter(self, function: str) -> None:
        with self._lock:
            self.calls += 1
            code = self._fail_once.pop(function, None)
            release = self._hangs.get(function)
        if release is not None and not release.is_set():
            self.entered.set()
            release.wait()
        if code is not None:
            raise nvml_error(code)

    def _device(self, function: str, handle: _Handle) -> FakeGpu:
        self._enter(function)
        if not self.initialized:
            raise nvml_error(pynvml.NVML_ERROR_UNINITIALIZED)
        gpu = self.gpus[handle.index]
        if gpu.lost:
            raise nvml_error(pynvml.NVML_ERROR_GPU_IS_LOST)
        if function in gpu.unsupported:
            raise nvml_error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return gpu

    def _device_call(self, function: str, read: Callable[..., Any]) -> Callable[..., Any]:
        def call(handle: _Handle, *args: Any) -> Any:
            return read(self._device(function, handle), *args)

        call.__name__ = function
        return call

    def install(self, monkeypatch: Any) -> FakeNvml:
        def init() -> None:
            self._enter("nvmlInit")
            if self.missing is not None:
                raise nvml_error(self.missing)
            self.init_calls += 1
            self.initialized = True

        def shutdown() -> None:
            self._enter("nvmlShutdown")
            if not self.initialized:
                raise nvml_error(pynvml.NVML_ERROR_UNINITIALIZED)
            self.initialized = False

        def system(function: str, result: Callable[[], Any]) -> Callable[..., Any]:
            def call(*args: Any) -> Any:
                self._enter(function)
                if not self.initialized:
                    raise nvml_error(pynvml.NVML_ERROR_UNINITIALIZED)
                return result()

            call.__name__ = function
            return call

        def handle_by_index(index: int) -> _Handle:
            self._enter("nvmlDeviceGetHandleByIndex")
            if not self.initialized:
                raise nvml_error(pynvml.NVML_ERROR_UNINITIALIZED)
            if not 0 <= index < len(self.gpus):
                raise nvml_error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
            if self.gpus[index].lost:
                raise nvml_error(pynvml.NVML_ERROR_GPU_IS_LOST)
            return _Handle(index)

        def event_wait(event_set: object, timeout_ms: int) -> Any:
            self._enter("nvmlEventSetWait")
            with self._lock:
                if not self._events:
                    raise nvml_error(pynvml.NVML_ERROR_TIMEOUT)
                index, code = self._events.pop(0)
            return pynvml.nvmlFriendlyObject(
                {
                    "device": _Handle(index),
                    "eventType": pynvml.nvmlEventTypeXidCriticalError,
                    "eventData": code,
                    "gpuInstanceId": 0xFFFFFFFF,
                    "computeInstanceId": 0xFFFFFFFF,
                }
            )

        def processes(gpu: FakeGpu) -> list[Any]:
            return [
                pynvml.nvmlFriendlyObject(
                    {
                        "pid": pid,
                        "usedGpuMemory": used,
                        "gpuInstanceId": 0xFFFFFFFF,
                        "computeInstanceId": 0xFFFFFFFF,
                    }
                )
                for pid, used in gpu.processes
            ]

        device = {
            "nvmlDeviceGetUUID": lambda g: g.uuid,
            "nvmlDeviceGetName": lambda g: g.name,
            "nvmlDeviceGetUtilizationRates": lambda g: pynvml.c_nvmlUtilization_t(
                gpu=g.utilization, memory=g.memory_utilization
            ),
            "nvmlDeviceGetMemoryInfo": lambda g, *version: pynvml.c_nvmlMemory_t(
                total=g.memory_total, free=g.memory_total - g.memory_used, used=g.memory_used
            ),
            "nvmlDeviceGetTemperature": lambda g, sensor: g.temperature,
            "nvmlDeviceGetPowerUsage": lambda g: g.power_mw,
            "nvmlDeviceGetEnforcedPowerLimit": lambda g: g.power_limit_mw,
            "nvmlDeviceGetClockInfo": lambda g, clock: g.clocks_mhz[clock],
            "nvmlDeviceGetCurrentClocksThrottleReasons": lambda g: g.throttle_reasons,
            "nvmlDeviceGetEncoderUtilization": lambda g: [g.encoder, 167_000],
            "nvmlDeviceGetDecoderUtilization": lambda g: [g.decoder, 167_000],
            "nvmlDeviceGetTotalEccErrors": lambda g, kind, counter: g.ecc[kind],
            "nvmlDeviceGetComputeRunningProcesses": processes,
            "nvmlDeviceGetGraphicsRunningProcesses": lambda g: [],
            "nvmlDeviceRegisterEvents": lambda g, types, event_set: None,
        }
        for name, read in device.items():
            monkeypatch.setattr(pynvml, name, self._device_call(name, read))
        monkeypatch.setattr(pynvml, "nvmlInit", init)
        monkeypatch.setattr(pynvml, "nvmlShutdown", shutdown)
        monkeypatch.setattr(
            pynvml,
            "nvmlSystemGetDriverVersion",
            system("nvmlSystemGetDriverVersion", lambda: self.driver_version),
        )
        monkeypatch.setattr(
            pynvml, "nvmlDeviceGetCount", system("nvmlDeviceGetCount", lambda: len(self.gpus))
        )
        monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", handle_by_index)
        monkeypatch.setattr(
            pynvml, "nvmlEventSetCreate", system("nvmlEventSetCreate", lambda: object())
        )
        monkeypatch.setattr(pynvml, "nvmlEventSetFree", lambda event_set: None)
        monkeypatch.setattr(pynvml, "nvmlEventSetWait", event_wait)
        return self
