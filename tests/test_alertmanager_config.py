"""The Alertmanager configuration: generated, valid for amtool, routed as the cases say.

Routing cases are data (deploy/alertmanager/routing_tests.yaml), each run through
``amtool config routes test``; a deliberately wrong expectation must make amtool fail, so a
broken route tree cannot pass unnoticed.
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml

from inferwatch import alertmanager
from inferwatch.alertmanager import Timing, render_alertmanager_config
from inferwatch.alerts.units import parse_duration
from tests.support.amtool import amtool, route_test
from tests.support.hashseed import other_seeds, rendered_in_other_processes

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
CASES_FILE = ROOT / "deploy" / "alertmanager" / "routing_tests.yaml"
CASES: list[dict[str, Any]] = yaml.safe_load(CASES_FILE.read_text(encoding="utf-8"))["cases"]


def test_committed_config_is_the_default_rendering() -> None:
    assert alertmanager.files(None) == {
        "deploy/alertmanager/alertmanager.yml": render_alertmanager_config()
    }


def rendered_for_the_sink() -> str:
    return render_alertmanager_config("http://alert-sink:9095")


def test_rendering_is_deterministic_and_takes_the_sink_url() -> None:
    text = render_alertmanager_config("http://alert-sink:9095/")
    assert text == render_alertmanager_config("http://alert-sink:9095")
    # In other processes too: under another hash seed every set iterates in another order.
    assert rendered_in_other_processes(rendered_for_the_sink) == dict.fromkeys(other_seeds(), text)
    config = yaml.safe_load(text)
    urls = {r["name"]: r["webhook_configs"][0]["url"] for r in config["receivers"]}
    assert urls == {
        name: f"http://alert-sink:9095/alerts/{name}" for name in alertmanager.RECEIVERS
    }
    assert "127.0.0.1" not in text


@pytest.mark.parametrize("url", ["alert-sink:9095", "ftp://x", "http://", "http://h/?a=1"])
def test_rendering_refuses_bad_sink_urls(url: str) -> None:
    with pytest.raises(ValueError, match="sink_url"):
        render_alertmanager_config(url)


def test_committed_config_passes_amtool_check_config() -> None:
    result = amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert "1 inhibit rules" in result.stdout and "4 receivers" in result.stdout


def test_rendering_with_other_url_and_timings_passes_amtool(tmp_path: Path) -> None:
    path = tmp_path / "alertmanager.yml"
    fast = Timing("0s", "1s", "1m")
    path.write_text(render_alertmanager_config("https://sink.example:8443", timings=fast))
    result = amtool("check-config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def _seconds(duration: str) -> Fraction:
    return parse_duration(duration)  # the project's one duration grammar: raises if malformed


def test_timings_page_faster_than_chat_and_heartbeat_repeats_often() -> None:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    routes = {r["receiver"]: r for r in config["route"]["routes"]}
    routes["default"] = config["route"]
    assert list(routes) == ["heartbeat", "pager", "chat", "default"]  # first match wins
    pager, chat, heartbeat = routes["pager"], routes["chat"], routes["heartbeat"]
    for key in ("group_wait", "group_interval", "repeat_interval"):
        assert _seconds(pager[key]) < _seconds(chat[key]), key
    assert _seconds(heartbeat["repeat_interval"]) <= 120
    assert _seconds(heartbeat["group_wait"]) == 0
    for route in routes.values():
        assert {"alertname", "service"} <= set(route["group_by"]) or route is heartbeat
        assert _seconds(route["group_interval"]) <= _seconds(route["repeat_interval"])
    assert config["inhibit_rules"] == [
        {
            "source_matchers": ['severity="critical"'],
            "target_matchers": ['severity="warning"'],
            "equal": alertmanager.identity_labels(),
        }
    ]


def _aggregation_labels(expr: str) -> set[str]:
    return {
        label.strip()
        for clause in re.findall(r"\bby \(([^)]*)\)", expr)
        for label in clause.split(",")
    } - {"le"}


def test_inhibition_compares_every_label_an_alert_is_aggregated_by() -> None:
    # Read from the generated rules, independently of the catalogue the config derives from:
    # every label a recorded series an alert reads is aggregated by must be compared.
    rules = ROOT / "alerts"
    recorded = {
        r["record"]: _aggregation_labels(r["expr"])
        for g in yaml.safe_load((rules / "recording_rules.yaml").read_text())["groups"]
        for r in g["rules"]
    }
    alerts = [
        r
        for g in yaml.safe_load((rules / "alert_rules.yaml").read_text())["groups"]
        for r in g["rules"]
    ]
    equal = set(alertmanager.identity_labels())
    checked = set()
    for alert in alerts:
        for series in re.findall(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", alert["expr"]):
            assert recorded[series] <= equal, (alert["alert"], series, recorded[series] - equal)
            checked.add(alert["alert"])
    assert len(checked) >= 20  # every threshold and SLO alert reads a recorded series
    assert {"instance", "http_route", "model", "gpu", "cache"} <= equal


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_routing_case(case: dict[str, Any]) -> None:
    result = route_test(CONFIG, case["labels"], case["receivers"])
    assert result.returncode == 0, (
        f"{case['labels']} expected {case['receivers']}: {result.stdout}{result.stderr}"
    )
    assert result.stdout.split() == case["receivers"]


def test_cases_cover_every_receiver() -> None:
    covered = {receiver for case in CASES for receiver in case["receivers"]}
    assert covered == set(alertmanager.RECEIVERS)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_a_wrong_expectation_makes_amtool_fail(case: dict[str, Any]) -> None:
    wrong = next(r for r in alertmanager.RECEIVERS if r not in case["receivers"])
    result = route_test(CONFIG, case["labels"], [wrong])
    assert result.returncode != 0, f"amtool accepted {wrong!r} for {case['labels']}"
    assert "did not match" in result.stdout + result.stderr


def _examples(text: str) -> list[dict[str, Any]]:
    """The commented receiver examples at the end of the file, uncommented."""
    start = text.index("  # - name:")
    lines = [line.removeprefix("  # ").removeprefix("  #") for line in text[start:].splitlines()]
    return list(yaml.safe_load("\n".join(lines)))


def test_commented_examples_are_valid_and_read_secrets_from_files(tmp_path: Path) -> None:
    text = CONFIG.read_text(encoding="utf-8")
    examples = _examples(text)
    assert [e["name"] for e in examples] == ["pager", "chat", "email"]
    [pagerduty] = examples[0]["pagerduty_configs"]
    [slack] = examples[1]["slack_configs"]
    [email] = examples[2]["email_configs"]
    assert pagerduty["routing_key_file"].startswith("/etc/alertmanager/secrets/")
    assert "service_key_file:" in text  # the Events API v1 alternative, commented
    assert slack["api_url_file"].startswith("/etc/alertmanager/secrets/")
    assert email["auth_password_file"].startswith("/etc/alertmanager/secrets/")

    # Merged into the real configuration, the examples pass amtool too.
    config = yaml.safe_load(text)
    by_name = {r["name"]: r for r in config["receivers"]}
    for example in examples:
        by_name.setdefault(example["name"], {"name": example["name"]}).update(example)
    config["receivers"] = list(by_name.values())
    path = tmp_path / "with-examples.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = amtool("check-config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_secret_or_password_is_written_inline() -> None:
    text = CONFIG.read_text(encoding="utf-8")
    inline = re.findall(
        r"^\s*#?\s*-?\s*(api_url|routing_key|service_key|auth_password|auth_secret|"
        r"bot_token|password|bearer_token|credentials|api_key)\s*:",
        text,
        re.MULTILINE,
    )
    assert inline == []


def test_readme_table_matches_the_timings() -> None:
    readme = (CONFIG.parent / "README.md").read_text(encoding="utf-8")
    for receiver, timing in alertmanager.TIMINGS.items():
        row = f"| `{receiver}` | {timing.group_wait} | {timing.group_interval} | "
        assert row + f"{timing.repeat_interval} |" in readme, receiver
