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
            "Score: the worst figure relative to its warning threshold (1.00 = at the warning).",
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
