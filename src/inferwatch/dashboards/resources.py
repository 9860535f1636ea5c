"""Resources: host CPU, memory and its growth trend, disk and network I/O, and every GPU."""

from __future__ import annotations

from inferwatch.alerts.thresholds import Thresholds
from inferwatch.dashboards import panels as p
from inferwatch.dashboards.model import DashboardSpec, Query, Step
from inferwatch.dashboards.thresholds import GREEN, RED, steps

UID = "inferwatch-resources"
HOST = p.sel(p.JOB, p.INSTANCE)
CPU = "instance:inferwatch_host_cpu_usage:ratio_rate5m"
MEMORY = "instance:inferwatch_host_memory_usage:ratio"
# The service's own processes, the ones the leak alert judges (see the recording rules).
SERVICE_RSS = "instance:process_resident_memory_bytes:sum"
GROWTH = "instance:process_resident_memory_bytes:deriv30m"
NOT_IDLE = 'reason!="gpu_idle"'
GPU_LEGEND = "GPU {{gpu}} {{instance}}"
GPU_NOTE = " Without a GPU the exporter's gpu collector fails and these series are absent."


def _gpu(t: Thresholds) -> tuple[tuple, ...]:
    def panel(title: str, description: str, unit: str, *queries: Query, **kw: object):
        return p.timeseries(title, description + GPU_NOTE, unit, *queries, needs=p.GPU, **kw)

    return (
        (
            panel(
                "GPU utilization",
                "Share of time a kernel was running, 5m average per GPU (recorded: what "
                "GPUHighUtilization reads).",
                "percentunit",
                Query(f"gpu:inferwatch_gpu_utilization_ratio:avg5m{HOST}", GPU_LEGEND),
                steps=steps(t, "gpu_utilization"),
                max=1,
                width=8,
            ),
            panel(
                "GPU memory usage",
                "Device memory in use over installed, per GPU (recorded: what "
                "GPUHighMemoryUsage reads).",
                "percentunit",
                Query(f"gpu:inferwatch_gpu_memory_usage:ratio{HOST}", GPU_LEGEND),
                steps=steps(t, "gpu_memory"),
                max=1,
                width=8,
            ),
            panel(
                "GPU temperature",
                "Core temperature per GPU (recorded: what GPUHighTemperature reads).",
                "celsius",
                Query(f"gpu:inferwatch_gpu_temperature_celsius:max{HOST}", GPU_LEGEND),
                steps=steps(t, "gpu_temperature"),
                min=None,
                width=8,
            ),
        ),
        (
            panel(
                "GPU power",
                "Power draw per GPU, with its enforced limit.",
                "watt",
                Query(f"inferwatch_gpu_power_watts{HOST}", GPU_LEGEND),
                Query(f"inferwatch_gpu_power_limit_watts{HOST}", "limit " + GPU_LEGEND),
                width=8,
            ),
            panel(
                "GPU throttling",
                "Reasons holding the clocks down (1 while active; gpu_idle is benign and "
                "left out).",
                "short",
                Query(
                    f"max by (instance, gpu, reason) (inferwatch_gpu_throttle_reasons"
                    f"{p.sel(p.JOB, p.INSTANCE, NOT_IDLE)})",
                    "GPU {{gpu}} {{reason}}",
                ),
                max=1,
                width=8,
            ),
            panel(
                "GPU errors (15m)",
                "XID errors and ECC memory errors per GPU over 15 minutes (recorded: what "
                "GPUXidErrors and the ECC alerts read); any XID error is amber.",
                "short",
                Query(f"gpu:inferwatch_gpu_xid_errors:increase15m{HOST}", "XID " + GPU_LEGEND),
                Query(
                    f"gpu:inferwatch_gpu_ecc_errors:increase15m{HOST}",
                    "ECC {{type}} " + GPU_LEGEND,
                ),
                steps=steps(t, "gpu_xid_errors"),
                width=8,
            ),
        ),
    )


def build(t: Thresholds) -> DashboardSpec:
    stats = (
        p.stat(
            "CPU usage",
            "Share of CPU time not idle over 5 minutes; amber and red at the HostHighCPUUsage "
            "levels.",
            "percentunit",
            Query(f"max({CPU}{HOST})"),
            steps=steps(t, "cpu_usage"),
            width=6,
        ),
        p.stat(
            "Memory usage",
            "Share of physical memory not available to new processes; amber and red at the "
            "HostHighMemoryUsage levels.",
            "percentunit",
            Query(f"max({MEMORY}{HOST})"),
            steps=steps(t, "memory_usage"),
            width=6,
        ),
        p.stat(
            "Memory growth (30m)",
            "Resident-memory growth of the service's processes over 30 minutes, the "
            "fastest-growing target: positive all along means a leak. Amber at the "
            "ProcessMemoryLeakSuspected level.",
            "Bps",
            Query(f"max({GROWTH})"),
            steps=steps(t, "memory_leak"),
            width=6,
        ),
        p.bargauge(
            "Exporter collectors",
            "1 when a collector of the exporter succeeded on the last scrape, 0 when it "
            "failed (its metrics are then missing, not zero). Without a GPU the gpu collector "
            "fails.",
            "short",
            Query(f"inferwatch_exporter_collector_success{HOST}", "{{collector}}"),
            steps=(Step(RED, None), Step(GREEN, 1.0)),
            max=1,
            width=6,
            height=5,
        ),
    )
    host = (
        p.timeseries(
            "CPU usage",
            "Share of CPU time not idle, 5m (recorded: what HostHighCPUUsage reads); "
            "dashed lines at its levels.",
            "percentunit",
            Query(f"{CPU}{HOST}", "{{instance}}"),
            steps=steps(t, "cpu_usage"),
            max=1,
            width=8,
        ),
        p.timeseries(
            "CPU time by mode",
            "CPU seconds per second (cores busy) by mode, idle left out.",
            "short",
            Query(
                p.sum_rate(
                    "inferwatch_host_cpu_seconds_total",
                    ("mode",),
                    p.JOB,
                    p.INSTANCE,
                    'mode!="idle"',
                ),
                "{{mode}}",
            ),
            width=8,
        ),
        p.timeseries(
            "Memory usage",
            "Share of physical memory in use (recorded: what HostHighMemoryUsage reads).",
            "percentunit",
            Query(f"{MEMORY}{HOST}", "{{instance}}"),
            steps=steps(t, "memory_usage"),
            max=1,
            width=8,
        ),
    )
    memory = (
        p.timeseries(
            "Service resident memory",
            "Resident memory of the service's own processes (all workers of a target summed), "
            "with its linear trend one hour ahead from the last 30 minutes: a trend line that "
            "keeps climbing reveals a leak.",
            "bytes",
            Query(SERVICE_RSS, "RSS {{job}} {{instance}}"),
            Query(
                f"predict_linear({SERVICE_RSS}[30m], 3600)",
                "in 1h at this trend {{job}} {{instance}}",
            ),
        ),
        p.timeseries(
            "Resident memory growth",
            "Least-squares slope of the service processes' resident memory over 30 minutes "
            "(recorded: what ProcessMemoryLeakSuspected reads).",
            "Bps",
            Query(GROWTH, "slope {{job}} {{instance}}"),
            steps=steps(t, "memory_leak"),
            min=None,
        ),
    )
    io = (
        p.timeseries(
            "Disk I/O",
            "Bytes read and written per second by disk.",
            "Bps",
            Query(
                p.sum_rate("inferwatch_host_disk_read_bytes_total", ("device",), p.JOB, p.INSTANCE),
                "read {{device}}",
            ),
            Query(
                p.sum_rate(
                    "inferwatch_host_disk_written_bytes_total", ("device",), p.JOB, p.INSTANCE
                ),
                "written {{device}}",
            ),
            width=8,
        ),
        p.timeseries(
            "Network I/O",
            "Bytes received and sent per second by interface.",
            "Bps",
            Query(
                p.sum_rate(
                    "inferwatch_host_network_receive_bytes_total", ("device",), p.JOB, p.INSTANCE
                ),
                "in {{device}}",
            ),
            Query(
                p.sum_rate(
                    "inferwatch_host_network_transmit_bytes_total", ("device",), p.JOB, p.INSTANCE
                ),
                "out {{device}}",
            ),
            width=8,
        ),
        p.timeseries(
            "Network errors and drops",
            "Receive/transmit errors and dropped packets per second, all interfaces.",
            "pps",
            Query(
                p.sum_rate("inferwatch_host_network_receive_errors_total", (), p.JOB, p.INSTANCE),
                "receive errors",
            ),
            Query(
                p.sum_rate("inferwatch_host_network_transmit_errors_total", (), p.JOB, p.INSTANCE),
                "transmit errors",
            ),
            Query(
                p.sum_rate("inferwatch_host_network_receive_drops_total", (), p.JOB, p.INSTANCE),
                "receive drops",
            ),
            width=8,
        ),
    )
    return DashboardSpec(
        uid=UID,
        title="inferwatch / Resources",
        description="Is the machine the bottleneck: CPU, memory (and leaks), disk, network, GPUs.",
        variables=(
            p.DATASOURCE,
            p.job_var("inferwatch_host_cpus"),
            p.instance_var("inferwatch_host_cpus"),
        ),
        rows=(stats, host, memory, _jobs_and_cost(t), io, *_gpu(t)),
    )


CURRENCY_UNITS = {"USD": "currencyUSD", "EUR": "currencyEUR", "GBP": "currencyGBP"}


def _jobs_and_cost(t: Thresholds) -> tuple:
    """Memory left behind by jobs, and what the service's resources cost per job."""
    unit = CURRENCY_UNITS.get(t.cost.currency.upper(), "short")
    prices = ", ".join(
        f"{resource.replace('_', ' ')} {float(price):g} {t.cost.currency}/h"
        for resource, price in t.cost.priced().items()
    )
    return (
        p.timeseries(
            "Memory growth over the last jobs",
            "Growth of the service processes' resident memory over their last jobs (20 by "
            "default), measured at each job's end (recorded: what JobMemoryGrowth reads).",
            "percentunit",
            Query("instance:inferwatch_job_memory_growth:ratio", "{{job}} {{instance}}"),
            steps=steps(t, "job_memory_growth"),
            min=None,
            width=8,
        ),
        p.timeseries(
            "Cost per 1000 jobs",
            f"What 1000 jobs cost in resources over the last hour, per service, at the "
            f"thresholds file's prices ({prices or 'none set'}).",
            unit,
            Query("job:inferwatch_cost_per_1000_jobs:ratio_rate1h", "{{job}}"),
            width=8,
        ),
        p.timeseries(
            "Cost per hour by resource",
            "What the service's resources cost per hour at the thresholds file's prices, by "
            "resource (CPU busy, resident memory, GPUs, instances), averaged over an hour.",
            unit,
            Query("3600 * job_resource:inferwatch_cost:rate1h", "{{job}} {{resource}}"),
            width=8,
        ),
    )
