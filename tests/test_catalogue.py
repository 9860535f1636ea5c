"""The metric catalogue: generated from the definitions, complete, conventionally named, and
identical to the copy in docs/metrics.md (so CI fails when a metric changes and the page does not).
"""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily

from inferwatch import catalogue
from inferwatch.cli import catalogue as catalogue_cli
from inferwatch.exporters.config import COLLECTOR_MODULES
from inferwatch.generation import registry
from inferwatch.generation.driver import markers
from inferwatch.http.instruments import HttpMetrics
from tests.support.hashseed import other_seeds, rendered_in_other_processes

ROOT = Path(__file__).resolve().parent.parent
METRICS_PAGE = ROOT / "docs" / "metrics.md"

_, GROUPED = catalogue.build()
METRICS = [info for _, infos in GROUPED for info in infos]


def exposed_types(registry: CollectorRegistry) -> dict[str, str]:
    """Metric name -> type, read from what a scrape actually returns (`# TYPE` lines)."""
    text = generate_latest(registry).decode()
    found = re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE)
    # The text format names counters' TYPE line with `_total`; older clients did not.
    return {n if t != "counter" or n.endswith("_total") else n + "_total": t for n, t in found}


def table_rows(markdown: str) -> dict[str, str]:
    """Metric name -> type, parsed from the rendered tables."""
    return dict(re.findall(r"^\| `([^`]+)` \| (\w+) \|", markdown, re.MULTILINE))


# -- docs/metrics.md -----------------------------------------------------------------------------
def test_generate_writes_the_catalogue_into_the_metrics_page_section() -> None:
    # `inferwatch generate --check` (tests/test_generation.py) keeps the page's copy current.
    (output,) = [p for p in registry.PRODUCERS if p.name == "catalogue"]
    assert output.make(None) == {"docs/metrics.md#catalogue": catalogue.render()}
    start, end = markers("catalogue")
    page = METRICS_PAGE.read_text(encoding="utf-8")
    assert f"{start}\n\n{catalogue.render().strip()}\n\n{end}" in page


def test_render_is_deterministic() -> None:
    # In other processes too: under another hash seed every set iterates in another order.
    assert rendered_in_other_processes(catalogue.render) == dict.fromkeys(
        other_seeds(), catalogue.render()
    )
    for _, infos in GROUPED:
        assert [i.name for i in infos] == sorted(i.name for i in infos)


# -- completeness ---------------------------------------------------------------------------
def test_every_http_metric_is_listed() -> None:
    registry = CollectorRegistry()
    HttpMetrics(registry)
    rows = table_rows(catalogue.render())
    exposed = exposed_types(registry)
    assert exposed, "HttpMetrics registered nothing"
    missing = sorted(set(exposed) - set(rows))
    assert not missing, f"metrics missing from the catalogue: {missing}"
    assert {name: rows[name] for name in exposed} == exposed


def test_catalogue_lists_exactly_what_its_registry_exposes() -> None:
    registry, _ = catalogue.build()
    assert table_rows(catalogue.render()) == exposed_types(registry)


def test_labels_match_the_definitions() -> None:
    by_name = {info.name: info for info in METRICS}
    m = HttpMetrics(CollectorRegistry())
    assert by_name["http_server_request_duration_seconds"].labels == (m.request_duration.labelnames)
    assert by_name["http_server_exceptions_total"].labels == m.exceptions.labelnames
    assert all("le" not in info.labels for info in METRICS)


def test_exporter_tables_are_the_collectors_declarations() -> None:
    # One table for the runner, one per configured collector, each listing its declarations.
    modules = [catalogue.EXPORTER_RUNNER_MODULE, *COLLECTOR_MODULES.values()]
    tables = {
        metric_set.title: [(i.name, i.type, i.labels, i.help) for i in infos]
        for metric_set, infos in GROUPED
        if "exporter" in metric_set.title
    }
    assert len(tables) == len(modules)
    for module_name, (title, rows) in zip(modules, tables.items(), strict=True):
        if module_name != catalogue.EXPORTER_RUNNER_MODULE:
            assert f"(`{module_name}`)" in title
        descriptors = importlib.import_module(module_name).METRICS
        assert rows == sorted((d.name, d.type, d.labels, d.help) for d in descriptors)


# -- naming conventions ---------------------------------------------------------------------
# Words that name a time or a size: such metrics must carry the base unit as suffix.
_TIME_WORDS = {"duration", "latency", "time", "age", "uptime", "elapsed"}
_SIZE_WORDS = {"size", "bytes"}
_NON_BASE_UNITS = (
    "_milliseconds", "_ms", "_microseconds", "_us", "_nanoseconds", "_minutes", "_hours",
    "_kilobytes", "_kb", "_megabytes", "_mb", "_gigabytes", "_gb", "_percent",
)  # fmt: skip
_RESERVED_SUFFIXES = ("_bucket", "_count", "_sum", "_created", "_gcount", "_gsum")


@pytest.mark.parametrize("info", METRICS, ids=lambda info: info.name)
def test_name_follows_prometheus_conventions(info: catalogue.MetricInfo) -> None:
    name = info.name
    # lower snake case; colons are reserved for recording rules
    assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", name), name
    if info.type == "counter":
        assert name.endswith("_total"), f"counter {name} must end in _total"
    else:
        assert not name.endswith("_total"), f"{info.type} {name} must not end in _total"
    base = name.removesuffix("_total")
    assert not base.endswith(_RESERVED_SUFFIXES), f"{name}: suffix clashes with series names"
    assert not base.endswith(_NON_BASE_UNITS), f"{name}: use base units (seconds, bytes, ratio)"
    words = set(base.split("_"))
    if words & _TIME_WORDS:
        assert base.endswith("_seconds"), f"{name} measures time: end it in _seconds"
    if words & _SIZE_WORDS:
        # a size, or a size per second (a slope the exporter derives, such as memory growth)
        assert base.endswith(("_bytes", "_bytes_per_second")), (
            f"{name} measures a size: end it in _bytes"
        )


@pytest.mark.parametrize("info", METRICS, ids=lambda info: info.name)
def test_labels_and_help(info: catalogue.MetricInfo) -> None:
    for label in info.labels:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", label), f"{info.name}: label {label!r}"
    # A sentence: a capital or a figure first ("1 when the server answered, ..."), a full stop.
    first = info.help[:1]
    assert (first.isupper() or first.isdigit()) and info.help.endswith("."), (
        f"{info.name}: help text should be a sentence: {info.help!r}"
    )


# -- extension points -----------------------------------------------------------------------
class _GpuCollector:
    """Stands in for a later custom collector that yields families at scrape time."""

    def describe(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily("gpu_utilization_ratio", "GPU busy time.", labels=["gpu"])]

    def collect(self) -> list[GaugeMetricFamily]:
        return self.describe()


def _extra_set(registry: CollectorRegistry) -> None:
    prometheus_client.Counter("jobs", "Jobs finished.", ["model", "outcome"], registry=registry)
    prometheus_client.Histogram("queue_wait_seconds", "Time in queue.", registry=registry)
    registry.register(_GpuCollector())


def test_later_metric_sets_render_as_their_own_table() -> None:
    sets = [*catalogue.METRIC_SETS, catalogue.MetricSet("Jobs", _extra_set)]
    text = catalogue.render(sets)
    assert text.startswith(catalogue.render())  # existing tables unchanged, new one appended
    assert "### Jobs" in text
    assert "| `jobs_total` | counter | `model`, `outcome` | Jobs finished. |" in text
    assert "| `queue_wait_seconds` | histogram | — | Time in queue. |" in text
    assert "| `gpu_utilization_ratio` | gauge | `gpu` | GPU busy time. |" in text


def test_a_name_defined_twice_fails() -> None:
    sets = [*catalogue.METRIC_SETS, *catalogue.METRIC_SETS]
    with pytest.raises(ValueError, match="Duplicated"):
        catalogue.build(sets)


def test_help_text_cannot_break_the_table() -> None:
    def piped(registry: CollectorRegistry) -> None:
        prometheus_client.Gauge("a_ratio", "Either a | b.", registry=registry)

    assert "| Either a \\| b. |" in catalogue.render([catalogue.MetricSet("P", piped)])


# -- command line ---------------------------------------------------------------------------
def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="inferwatch")
    catalogue_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["catalogue", *argv])
    return args.func(args)


def test_cli_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli() == 0
    assert capsys.readouterr().out == catalogue.render()
