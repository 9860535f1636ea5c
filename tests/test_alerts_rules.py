"""Generated rules: naming, overrides by label matcher, exact burn-rate arithmetic."""

from __future__ import annotations

from inferwatch.alerts import alerting, recording, runbook_data, slo
from inferwatch.alerts.thresholds import load_thresholds

OVERLAY = """
overrides:
  - match: {http_route: /v1/chat}
    profile: interactive
  - match: {service: music-api}
    signals:
      api_latency_p95: {warning: 30s, critical: 1m}
"""


def _rules(thresholds, alert: str) -> list[dict]:
    return [r for g in alerting.groups(thresholds) for r in g["rules"] if r["alert"] == alert]


def test_recording_rule_names() -> None:
    names = recording.record_names(load_thresholds())
    for name in (
        "job_route:http_server_requests:rate5m",
        "job_route:http_server_request_duration_seconds:p95_5m",
        "job:http_server_request_errors:ratio_rate5m",
        "job_pool:db_client_connection_usage:ratio",
        "job:http_server_request_errors:ratio_rate3d",
        "job:http_server_request_slow:ratio_rate30m",
    ):
        assert name in names
    assert all(len(name.split(":")) == 3 for name in names)
    assert len(names) == len(set(names))


def test_every_alert_has_both_annotations_runbook_and_severity() -> None:
    t = load_thresholds()
    for group in alerting.groups(t):
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("warning", "critical", "none")
            assert "for" in rule
            assert set(rule["annotations"]) == {
                "summary", "description", "runbook_url", "dashboard_url",
            }  # fmt: skip
            assert rule["annotations"]["runbook_url"].endswith(
                f"/alerts/runbooks/{rule['alert']}.md"
            )
    assert set(alerting.alert_names(t)) <= set(runbook_data.pages())
    assert alerting.severities(t)["Watchdog"] == ["none"]
    watchdog = _rules(t, "Watchdog")[0]
    assert watchdog["expr"] == "vector(1)"


def test_every_signal_has_a_runbook_page() -> None:
    from inferwatch.alerts.signals import SIGNALS

    assert {s.alert for s in SIGNALS} | {s.alert for s in slo.SLIS} | {"Watchdog"} == set(
        runbook_data.pages()
    )


def test_overrides_add_rules_and_exclude_their_series_from_the_defaults() -> None:
    t = load_thresholds(OVERLAY)
    exprs = [(r["labels"]["severity"], r["expr"]) for r in _rules(t, "APIHighLatencyP95")]
    series = "job_route:http_server_request_duration_seconds:p95_5m"
    assert exprs == [
        ("warning", f'{series} > 2 unless {series}{{http_route="/v1/chat"}} '
                    f'unless {series}{{job="music-api"}}'),
        ("critical", f'{series} > 5 unless {series}{{http_route="/v1/chat"}} '
                     f'unless {series}{{job="music-api"}}'),
        ("warning", f'{series}{{http_route="/v1/chat"}} > 0.15'),
        ("warning", f'{series}{{job="music-api"}} > 30 unless {series}{{http_route="/v1/chat"}}'),
        ("critical", f'{series}{{job="music-api"}} > 60 unless {series}{{http_route="/v1/chat"}}'),
    ]  # fmt: skip
    p99 = [r["expr"] for r in _rules(t, "APIHighLatencyP99")]
    assert p99 == [
        'job_route:http_server_request_duration_seconds:p99_5m{http_route="/v1/chat"} > 0.2'
    ]


def test_burn_rate_thresholds_render_exactly() -> None:
    t = load_thresholds()
    exprs = [r["expr"] for r in slo.rules(t)]
    ratio = "job:http_server_request_errors:ratio_rate"
    assert exprs[0] == f"{ratio}1h > 0.072 and {ratio}5m > 0.072"
    assert exprs[1] == f"{ratio}6h > 0.03 and {ratio}30m > 0.03"
    assert exprs[2] == f"{ratio}1d > 0.015 and {ratio}2h > 0.015"
    assert exprs[3] == f"{ratio}3d > 0.005 and {ratio}6h > 0.005"
    slow = "job:http_server_request_slow:ratio_rate"
    assert exprs[4] == f"{slow}1h > 0.144 and {slow}5m > 0.144"
    tricky = load_thresholds("slo:\n  availability: {objective: 99.9%}\n")
    assert slo.rules(tricky)[0]["expr"] == f"{ratio}1h > 0.0144 and {ratio}5m > 0.0144"
