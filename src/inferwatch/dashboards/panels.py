"""Shared panel builders, label selectors and template variables for the dashboards."""

from __future__ import annotations

from collections.abc import Iterable

from inferwatch.dashboards.model import Needs, Panel, Query, Step, Variable
from inferwatch.dashboards.thresholds import plain

RATE = "$__rate_interval"  # Grafana widens it to cover at least four scrapes
QUANTILES = (("p50", "0.5"), ("p90", "0.9"), ("p95", "0.95"), ("p99", "0.99"))

# --- template variables ---------------------------------------------------------------------

DATASOURCE = Variable("datasource", "Data source", "", kind="datasource", include_all=False)


def job_var(metric: str) -> Variable:
    return Variable("job", "Job", f"label_values({metric}, job)")


def instance_var(metric: str) -> Variable:
    return Variable("instance", "Instance", f'label_values({metric}{{job=~"$job"}}, instance)')


def label_var(name: str, label: str, metric: str, title: str) -> Variable:
    return Variable(name, title, f'label_values({metric}{{job=~"$job"}}, {label})')


# --- selectors -------------------------------------------------------------------------------


def sel(*matchers: str) -> str:
    """``{a, b}`` from matchers, skipping empty ones."""
    return "{" + ", ".join(m for m in matchers if m) + "}"


JOB = 'job=~"$job"'
INSTANCE = 'instance=~"$instance"'
ROUTE = 'http_route=~"$route"'
MODEL = 'model=~"$model"'


def sum_rate(metric: str, by: Iterable[str], *matchers: str) -> str:
    labels = ", ".join(by)
    grouping = f" by ({labels})" if labels else ""
    return f"sum{grouping} (rate({metric}{sel(*matchers)}[{RATE}]))"


def quantile(q: str, histogram: str, by: Iterable[str], *matchers: str) -> str:
    return f"histogram_quantile({q}, {sum_rate(histogram + '_bucket', (*by, 'le'), *matchers)})"


def quantile_queries(
    histogram: str, by: Iterable[str], legend: str, *matchers: str, which: Iterable[str] = ()
) -> tuple[Query, ...]:
    chosen = set(which) or {name for name, _ in QUANTILES}
    return tuple(
        Query(quantile(q, histogram, by, *matchers), f"{legend} {name}".strip())
        for name, q in QUANTILES
        if name in chosen
    )


# --- panels ----------------------------------------------------------------------------------


def timeseries(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    steps: tuple[Step, ...] = (),
    width: int = 12,
    height: int = 8,
    needs: Needs | None = None,
    min: float | None = 0,
    max: float | None = None,
) -> Panel:
    return Panel(
        "timeseries",
        title,
        description,
        unit,
        queries,
        width,
        height,
        steps or plain(),
        needs=needs,
        min=min,
        max=max,
    )


def stat(
    title: str,
    description: str,
    unit: str,
    query: Query,
    *,
    steps: tuple[Step, ...] = (),
    width: int = 4,
    height: int = 5,
    needs: Needs | None = None,
) -> Panel:
    return Panel(
        "stat", title, description, unit, (query,), width, height, steps or plain(), needs=needs
    )


def bargauge(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    steps: tuple[Step, ...] = (),
    query_steps: tuple[tuple[str, tuple[Step, ...]], ...] = (),
    width: int = 12,
    height: int = 8,
    needs: Needs | None = None,
    min: float | None = 0,
    max: float | None = None,
) -> Panel:
    return Panel(
        "bargauge",
        title,
        description,
        unit,
        queries,
        width,
        height,
        steps or plain(),
        query_steps,
        needs,
        min,
        max,
    )


def table(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    width: int = 12,
    height: int = 8,
    needs: Needs | None = None,
) -> Panel:
    return Panel("table", title, description, unit, queries, width, height, plain(), needs=needs)


# --- why a panel may be empty ----------------------------------------------------------------


def fault(name: str, setting: float) -> Needs:
    return Needs("fault", name, setting)


# Simulated in the live dashboard test (a fake NVML behind a second exporter).
GPU = Needs("gpu", "an NVIDIA GPU")
