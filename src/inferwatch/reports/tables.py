"""The report as titled tables of text cells: one layout, written as Markdown and HTML."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""
    chart: str = ""  # a PNG drawn for the table, relative to the report's folder


def ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.1f} ms"


def pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.2f}%"


def num(v: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if v is None else fmt.format(v)


def mib(v: float | None) -> str:
    return "-" if v is None else f"{v / 2**20:.1f} MiB"


def when(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%H:%M:%S")


def _evidence(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


_TREND_NAMES = {"process_cpu": "Process CPU", "process_rss": "Process RSS", "host_cpu": "Host CPU"}


def _level(v: float, unit: str) -> str:
    if unit == "bytes":
        return mib(v)
    if unit == "ratio":
        return pct(v)
    return f"{v:.3f} {unit}"


def _per_hour(v: float, unit: str) -> str:
    if unit == "bytes":
        return f"{v / 2**20:+.2f} MiB/h"
    if unit == "ratio":
        return f"{v * 100:+.3f} pp/h"  # percentage points
    return f"{v:+.4f} {unit}/h"


def _direction(line: dict[str, Any]) -> str:
    low, high = line["ci95_per_hour"]
    if low > 0:
        return "rising"
    if high < 0:
        return "falling"
    return "flat (interval holds 0)"


def trend_table(report: dict[str, Any]) -> Table:
    found = report["figures"].get("trends", {})
    rows = []
    for line in found.get("series", []):
        unit, fit = line["unit"], line["fit"]
        low, high = line["ci95_per_hour"]
        rows.append(
            [_TREND_NAMES.get(line["resource"], line["resource"]), line["subject"],
             f"{fit['n']} ({fit['n_effective']:.1f})", _level(line["fitted_start"], unit),
             _level(line["fitted_end"], unit), _per_hour(line["slope_per_hour"], unit),
             f"{_per_hour(low, unit)} to {_per_hour(high, unit)}", _direction(line)]
        )  # fmt: skip
    steps = found.get("step_seconds", {})
    return Table(
        "Trends",
        ["Series", "Subject", "n (effective)", "Fitted start", "Fitted end", "Slope",
         "95% interval", "Trend"],
        rows,
        "Least-squares line over the window's samples (every "
        f"{num(steps.get('gauges'), '{:.3g}')} s; CPU as the rate between samples "
        f"{num(steps.get('counters'), '{:.3g}')} s apart). The slope's 95% interval is from the "
        "residuals, Student's t on n_eff - 2 degrees of freedom, n_eff being n reduced for "
        "the residuals' lag-1 autocorrelation. pp: percentage points.",
        report.get("section_charts", {}).get("trends", ""),
    )  # fmt: skip


def _band(row: dict[str, Any], whole: bool = False) -> str:
    low, high = row["low"], row["high"]
    if not whole:
        return f"{low:g}-{high:g}"
    first = int(low) + 1
    return str(int(high)) if first >= int(high) else f"{first}-{int(high)}"


def scalability_tables(report: dict[str, Any]) -> list[Table]:
    found = report["figures"].get("scalability", {})
    chart = report.get("section_charts", {}).get("scalability", "")
    step = num(found.get("step_seconds"), "{:.3g}")
    by_concurrency = Table(
        "Scalability by concurrency",
        ["In flight", "Mean in flight", "Seconds", "Requests", "Throughput", "P50", "P95",
         "P99"],
        [
            [_band(r), f"{r['level_avg']:.2f}", f"{r['seconds']:.1f}",
             str(round(r["counts"]["requests"])), f"{r['per_second']['requests']:.2f} req/s",
             *(ms(r["latency_seconds"].get(k)) for k in ("p50", "p95", "p99"))]
            for r in found.get("concurrency", [])
        ],
        f"The window in {step} s intervals, each classed by its mean number of HTTP requests "
        "in flight (Little's law: the seconds its completed requests took, over its length); "
        "intervals without requests left out.",
    )  # fmt: skip
    by_batch = Table(
        "Scalability by batch size",
        ["Batch size", "Mean batch", "Seconds", "Batches", "Inputs", "Inputs/s", "Requests/s",
         "P50", "P95"],
        [
            [_band(r, whole=True), f"{r['batch_size_avg']:.2f}", f"{r['seconds']:.1f}",
             str(round(r["counts"]["batches"])), str(round(r["counts"]["items"])),
             f"{r['per_second']['items']:.2f}", f"{r['per_second']['requests']:.2f}",
             *(ms(r["latency_seconds"].get(k)) for k in ("p50", "p95"))]
            for r in found.get("batch_size", [])
        ],
        f"The window in {step} s intervals, each classed by the mean size of the batches the "
        "models ran in it; latency of the inference requests completed in those intervals. "
        "Inputs: requests the batches held (a request's batch_size counts as that many).",
        chart,
    )  # fmt: skip
    return [by_concurrency, by_batch]


def _verdict(result: dict[str, Any]) -> str:
    if not result.get("judged", True):
        return "n/a"
    return "ok" if result["passed"] else "**FAILED**"


def tables(report: dict[str, Any]) -> list[Table]:
    f = report["figures"]
    out = []
    totals = f["totals"]
    out.append(
        Table(
            "Summary",
            ["Requests", "Throughput", "Error rate", "Success rate", "P50", "P95", "P99"],
            [[
                str(totals["requests"]), f"{totals['throughput_rps']:.2f} req/s",
                pct(totals["error_rate"]), pct(totals["success_rate"]),
                *(ms(totals["latency_seconds"].get(k)) for k in ("p50", "p95", "p99")),
            ]],
        )
    )  # fmt: skip
    out.append(
        Table(
            "Latency and throughput per route",
            ["Method", "Route", "Requests", "req/s", "Errors", "P50", "P90", "P95", "P99"],
            [
                [r["method"], f"`{r['route']}`", str(r["requests"]), f"{r['throughput_rps']:.2f}",
                 pct(r["error_rate"]),
                 *(ms(r["latency_seconds"].get(k)) for k in ("p50", "p90", "p95", "p99"))]
                for r in f["routes"]
            ],
            "Percentiles from the histogram buckets over the whole window.",
        )
    )  # fmt: skip
    out.append(
        Table(
            "Bottleneck analysis",
            ["Rank", "Candidate", "Score", "Evidence", "Recommendations"],
            [
                [str(i), c["title"] + (" (likely)" if c["likely"] else ""), f"{c['score']:.2f}",
                 "; ".join(f"{k}={_evidence(v)}" for k, v in c["evidence"].items()),
                 " ".join(c["recommendations"])]
                for i, c in enumerate(report["bottlenecks"], 1)
            ],
            "Score: the highest saturation score recorded in the window, as the overview's "
            "'Likely bottleneck now' panel shows it (1.00 = at the judging alert's warning).",
        )
    )  # fmt: skip
    out.append(
        Table(
            "Models",
            ["Model", "Inferences", "P50", "P95", "Queue P95", "Loads", "Load avg"],
            [
                [m["model"], str(m["inferences"]), ms(m["inference_seconds"].get("p50")),
                 ms(m["inference_seconds"].get("p95")), ms(m["queue_seconds"].get("p95")),
                 str(m["loads"]), num(m["load_seconds_avg"], "{:.3f} s")]
                for m in f["models"]
            ],
        )
    )  # fmt: skip
    res = f["resources"]
    rows = [[f"CPU {k}", pct(v["avg"]), pct(v["max"])] for k, v in res["cpu_usage"].items()]
    rows += [[f"Memory {k}", pct(v["avg"]), pct(v["max"])] for k, v in res["memory_usage"].items()]
    rows += [
        [f"RSS {k}", mib(v["avg"]), mib(v["max"])] for k, v in res["process_rss_bytes"].items()
    ]
    rows += [[f"GPU {k}", pct(v["avg"]), pct(v["max"])] for k, v in res["gpu_utilization"].items()]
    rows += [[f"RSS growth {k}", f"{v / 1024:.1f} KiB/s", ""]
             for k, v in f["memory_leak"]["rss_growth_bytes_per_second"].items()]  # fmt: skip
    out.append(Table("Resources", ["Series", "Average", "Max"], rows))
    out.append(trend_table(report))
    out += scalability_tables(report)
    out.append(
        Table(
            "Connection pools",
            ["Pool", "Usage avg", "Usage max", "Pending max", "Timeouts", "Waits", "Wait avg"],
            [
                [p["pool"], pct(p["usage"].get("avg")), pct(p["usage"].get("max")),
                 num(p["pending"].get("max"), "{:g}"), str(p["timeouts"]), str(p["waits"]),
                 ms(p["wait_seconds_avg"])]
                for p in f["pools"]
            ],
        )
    )  # fmt: skip
    out.append(
        Table(
            "Caches",
            ["Cache", "Gets", "Hits", "Hit ratio"],
            [
                [c["cache"], str(c["gets"]), str(c["hits"]), pct(c["hit_ratio"])]
                for c in f["caches"]
            ],
        )
    )
    out.append(
        Table(
            "Database and Redis commands",
            ["System", "Pool", "Commands", "P50", "P90", "P99"],
            [
                [o["system"], o["pool"], str(o["operations"]),
                 *(ms(o["seconds"].get(k)) for k in ("p50", "p90", "p99"))]
                for o in f.get("db_operations", [])
            ],
        )
    )  # fmt: skip
    out.append(
        Table(
            "Dependencies",
            ["Peer", "Calls", "Outcomes", "Retries", "Recovery", "Attempt P95",
             "Breaker opened", "Recoveries", "MTTR"],
            [
                [u["peer"], str(u["calls"]),
                 ", ".join(f"{k}={v}" for k, v in sorted(u["outcomes"].items())) or "-",
                 str(u["retries"]), pct(u["recovery_rate"]), ms(u["attempt_seconds"].get("p95")),
                 str(u["breaker"]["opened"]), str(u["breaker"]["recoveries"]),
                 num(u["breaker"]["mttr_seconds"], "{:.1f} s")]
                for u in f.get("upstream", [])
            ],
            "Recovery: calls a retry saved, of those whose first attempt failed. MTTR: mean "
            "time from a breaker opening to it closing again.",
        )
    )  # fmt: skip
    faults = f.get("error_faults", {})
    out.append(
        Table(
            "Error-rate faults",
            ["Job", "Faults", "Recovered", "Longest", "MTTR"],
            [
                [job, str(len(e["episodes"])), str(sum(x["recovered"] for x in e["episodes"])),
                 num(max(x["seconds"] for x in e["episodes"]), "{:.0f} s"),
                 num(e["mttr_seconds"], "{:.0f} s")]
                for job, e in sorted(faults.get("jobs", {}).items())
            ],
            f"A fault: scrapes in a row in which more than {pct(faults.get('threshold'))} "
            "of the requests failed, from the first to the last (to within a scrape "
            "interval); MTTR: the mean duration of those that ended.",
        )
    )  # fmt: skip
    growth = f["memory_leak"].get("job_memory_growth", {})
    out.append(
        Table(
            "Jobs",
            ["Kind", "Jobs", "Outcomes", "Failed steps", "Memory added P95", "Memory added avg"],
            [
                [j["kind"], str(j["jobs"]),
                 ", ".join(f"{k}={v}" for k, v in sorted(j["outcomes"].items())),
                 ", ".join(f"{s}={o['failed']}" for s, o in sorted(j["steps"].items())
                           if o.get("failed")) or "-",
                 mib(j["memory_increase_bytes"].get("p95")), mib(j["memory_increase_bytes_avg"])]
                for j in f.get("jobs", [])
            ],
            "Memory growth over the last jobs, highest in the window: "
            + (", ".join(f"{k} {pct(v)}" for k, v in sorted(growth.items())) or "-") + ".",
        )
    )  # fmt: skip
    priced = report.get("cost")
    if priced is not None:
        currency = priced["currency"]
        rows = [
            [resource.replace("_", " "), f"{line['hours']:.4g}",
             f"{line['price_per_hour']:g} {currency}", f"{line['cost']:.4g} {currency}"]
            for resource, line in priced["by_resource"].items()
        ]  # fmt: skip
        rows.append(["total", "", "", f"{priced['total']:.4g} {currency}"])
        out.append(
            Table(
                "Cost",
                ["Resource", "Hours used", "Price per hour", "Cost"],
                rows,
                f"{priced['jobs']} jobs: "
                + num(priced["per_job"], f"{{:.4g}} {currency} per job, ")
                + num(priced["per_1000_jobs"], f"{{:.4g}} {currency} per 1000 jobs")
                + ", at the thresholds file's prices.",
            )
        )
    ws = f["websocket"]
    out.append(
        Table(
            "WebSocket",
            ["Attempts", "Accepted", "Success", "Outcomes", "Close codes"],
            [[str(ws["attempts"]), str(ws["accepted"]), pct(ws["success_ratio"]),
              ", ".join(f"{k}={v}" for k, v in ws["outcomes"].items()) or "-",
              ", ".join(f"{k}={v}" for k, v in ws["close_codes"].items()) or "-"]],
        )
    )  # fmt: skip
    out.append(
        Table(
            "Alerts that fired",
            ["Alert", "Severity", "First seen (UTC)", "Last seen (UTC)", "Labels"],
            [
                [a["alertname"], a["severity"], when(a["first_seen"]), when(a["last_seen"]),
                 ", ".join(f"{k}={v}" for k, v in a["labels"].items() if k != "alertstate")]
                for a in f["alerts"]
            ],
        )
    )  # fmt: skip
    if report.get("check") is not None:
        out.append(
            Table(
                "Production readiness",
                ["Result", "Criterion", "Subject", "Measured", "Limit"],
                [
                    [_verdict(r), r["criterion"], r["subject"], r["measured"], r["limit"]]
                    for r in report["check"]
                ],
            )
        )  # fmt: skip
    return out
