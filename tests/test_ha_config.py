"""The HA topology's configuration, without starting it: what each Prometheus replica,
Alertmanager and VictoriaMetrics is told, and the compose profile that runs the same.

tests/test_ha.py runs the topology; these are the cheap checks of each setting it relies on,
and of the single-instance stack staying as it was.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from inferwatch.deploy import compose
from inferwatch.stack import prometheus_config
from inferwatch.stack.components import components
from inferwatch.stack.settings import HAPorts, Ports, StackSettings

ROOT = Path(__file__).resolve().parent.parent
HA = StackSettings(ha=True, scrape_interval="1s", peer_timeout="3s")
needs_binaries = pytest.mark.skipif(
    not (
        shutil.which("prometheus")
        and (shutil.which("alertmanager") or shutil.which("prometheus-alertmanager"))
        and shutil.which("victoria-metrics")
    ),
    reason="needs the prometheus, prometheus-alertmanager and victoria-metrics Debian packages",
)


def config(settings: StackSettings, replica: int = 1) -> dict[str, Any]:
    return yaml.safe_load(prometheus_config.render(settings, replica))


def test_the_replicas_differ_in_their_replica_label_only() -> None:
    one, two = config(HA, 1), config(HA, 2)
    assert one["global"]["external_labels"] == {"stack": "inferwatch-local", "replica": "1"}
    assert two["global"]["external_labels"] == {"stack": "inferwatch-local", "replica": "2"}
    del one["global"]["external_labels"], two["global"]["external_labels"]
    assert one == two
    drop = [{"action": "labeldrop", "regex": "replica"}]
    # Alertmanager deduplicates the pair's alerts only when their labels are identical.
    assert one["alerting"]["alert_relabel_configs"] == drop
    assert one["alerting"]["alertmanagers"] == [
        {"static_configs": [{"targets": ["127.0.0.1:9093", "127.0.0.1:9096"]}]}
    ]
    # The store deduplicates samples of one series: both replicas write the same one.
    assert one["remote_write"] == [
        {
            "url": "http://127.0.0.1:8428/api/v1/write",
            "write_relabel_configs": drop,
            "queue_config": {"batch_send_deadline": "1s"},
        }
    ]
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in one["scrape_configs"]}
    assert jobs["prometheus"] == ["127.0.0.1:9090", "127.0.0.1:9092"]
    assert jobs["alertmanager"] == ["127.0.0.1:9093", "127.0.0.1:9096"]
    assert jobs["victoria-metrics"] == ["127.0.0.1:8428"]


def test_without_ha_the_configuration_is_the_single_instances() -> None:
    single = config(StackSettings())
    assert single["global"]["external_labels"] == {"stack": "inferwatch-local"}
    assert single["alerting"] == {
        "alertmanagers": [{"static_configs": [{"targets": ["127.0.0.1:9093"]}]}]
    }
    assert "remote_write" not in single
    assert "victoria-metrics" not in {j["job_name"] for j in single["scrape_configs"]}


@needs_binaries
def test_the_alertmanagers_gossip_with_each_other_and_the_store_deduplicates() -> None:
    parts = {c.name: c for c in components(HA)}
    assert list(parts) == [
        "alert-sink", "alertmanager", "alertmanager-2", "demo", "exporter",
        "victoria-metrics", "prometheus", "prometheus-2",
    ]  # fmt: skip
    one, two = parts["alertmanager"].command, parts["alertmanager-2"].command
    assert "--cluster.listen-address=127.0.0.1:9094" in one
    assert "--cluster.advertise-address=127.0.0.1:9094" in one
    assert "--cluster.peer=127.0.0.1:9097" in one
    assert "--cluster.listen-address=127.0.0.1:9097" in two
    assert "--cluster.peer=127.0.0.1:9094" in two
    assert "--cluster.peer-timeout=3s" in one and "--cluster.peer-timeout=3s" in two
    assert any(arg.endswith("/alertmanager-2") for arg in two)  # its own storage
    store = parts["victoria-metrics"].command
    assert "-dedup.minScrapeInterval=1000ms" in store
    assert "-httpListenAddr=127.0.0.1:8428" in store
    assert "-retentionPeriod=1d" in store
    assert parts["prometheus-2"].command[1].endswith("/prometheus-2.yml")
    # Without --ha: one Alertmanager without gossip, no store, one Prometheus.
    single = {c.name: c for c in components(StackSettings())}
    assert set(single) == {"alert-sink", "alertmanager", "demo", "exporter", "prometheus"}
    assert "--cluster.listen-address=" in single["alertmanager"].command


@needs_binaries
def test_a_fleet_is_consecutive_ports_each_its_own_instance() -> None:
    fleet = StackSettings(demos=3, exporters=2)
    parts = {c.name: c for c in components(fleet)}
    assert [parts[n].address for n in ("demo", "demo-2", "demo-3")] == [
        "127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8002",
    ]  # fmt: skip
    assert parts["exporter-2"].address == "127.0.0.1:9842"
    assert parts["exporter-2"].watch == "demo-2"  # the process it reports the memory of
    jobs = prometheus_config.scrape_jobs(fleet)
    assert jobs["inferwatch-api"] == ["127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8002"]
    assert jobs["inferwatch-exporter"] == ["127.0.0.1:9841", "127.0.0.1:9842"]


def test_ports_are_checked_with_the_topology_that_uses_them() -> None:
    # The HA ports matter only with --ha: 9094 is free for the exporter without it.
    StackSettings(ports=Ports(exporter=9094))
    with pytest.raises(ValueError, match="9094 for exporter and alertmanager_cluster"):
        StackSettings(ha=True, ports=Ports(exporter=9094))
    with pytest.raises(ValueError, match="8001 for exporter and demo"):
        StackSettings(demos=2, ports=Ports(exporter=8001))
    with pytest.raises(ValueError, match="--victoria-metrics-port must be a port"):
        StackSettings(ha=True, ha_ports=HAPorts(victoria_metrics=0))
    with pytest.raises(ValueError, match="--demos must be a whole number"):
        StackSettings(demos=0)
    with pytest.raises(ValueError, match="--long-term-retention"):
        StackSettings(ha=True, long_term_retention="2 days")
    with pytest.raises(ValueError, match="--peer-timeout must be a positive duration"):
        StackSettings(ha=True, peer_timeout="0s")


@needs_binaries
def test_an_ha_port_in_use_is_named_with_its_flag(tmp_path: Path) -> None:
    from inferwatch.stack import Stack, StackError

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = StackSettings(
            data_dir=tmp_path,
            ha=True,
            ports=Ports(19090, 19093, 19095, 18000, 19841),
            ha_ports=HAPorts(19092, 19096, 19094, 19097, port),
            embedded_backends=(),
        )
        with pytest.raises(StackError) as caught:
            Stack(settings).prepare()
    assert (
        f"port {port} on 127.0.0.1 is already in use; victoria metrics needs it (pick another "
        "with --victoria-metrics-port)"
    ) in str(caught.value)


def _compose_config(tmp_path: Path, **env: str) -> dict[str, Any]:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose (Debian package docker-compose) is not installed")
    secrets = {}
    for name in ("GRAFANA_ADMIN_PASSWORD_FILE", "POSTGRES_PASSWORD_FILE", "METRICS_TOKEN_FILE"):
        (tmp_path / name).write_text("x\n")
        secrets[name] = str(tmp_path / name)
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = subprocess.run(
        [exe, "-f", str(ROOT / "docker-compose.yml"), "--env-file", str(empty), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **secrets, **env},
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def _mounted_config(service: dict[str, Any]) -> Path:
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        if target == "/etc/prometheus/prometheus.yml":
            return Path(source)
    raise AssertionError(f"no prometheus.yml mounted: {service['volumes']}")


def test_the_compose_profile_runs_the_same_pair(tmp_path: Path) -> None:
    single = _compose_config(tmp_path)
    assert _mounted_config(single["prometheus"]) == ROOT / compose.PROMETHEUS_FILE
    assert "--cluster.listen-address=" in single["alertmanager"]["command"]
    ha = _compose_config(
        tmp_path,
        COMPOSE_PROFILES="ha",
        PROMETHEUS_CONFIG=Path(compose.HA_PROMETHEUS_FILES[0]).name,
        ALERTMANAGER_CLUSTER_LISTEN="0.0.0.0:9094",
    )
    assert _mounted_config(ha["prometheus"]) == ROOT / compose.HA_PROMETHEUS_FILES[0]
    assert _mounted_config(ha["prometheus-2"]) == ROOT / compose.HA_PROMETHEUS_FILES[1]
    one, two = ha["alertmanager"]["command"], ha["alertmanager-2"]["command"]
    assert {"--cluster.listen-address=0.0.0.0:9094", "--cluster.peer=alertmanager-2:9094"} <= set(
        one
    )
    assert {"--cluster.listen-address=0.0.0.0:9094", "--cluster.peer=alertmanager:9094"} <= set(two)
    # One sample per scrape interval: the interval both replicas scrape at.
    store = ha["victoria-metrics"]["command"]
    assert f"-dedup.minScrapeInterval={compose.SCRAPE_INTERVAL}" in store
    for path in compose.HA_PROMETHEUS_FILES:
        replica = yaml.safe_load((ROOT / path).read_text(encoding="utf-8"))
        (write,) = replica["remote_write"]
        host = write["url"].split("/")[2].split(":")[0]
        assert host in ha, write
        for entry in replica["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]:
            assert entry.split(":")[0] in ha, entry


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
@pytest.mark.parametrize("path", compose.HA_PROMETHEUS_FILES)
def test_the_compose_replicas_pass_promtool(tmp_path: Path, path: str) -> None:
    secrets = tmp_path / "run" / "secrets"
    secrets.mkdir(parents=True)
    (secrets / "metrics_token").write_text("token\n")
    text = (ROOT / path).read_text(encoding="utf-8").replace("/run/secrets/", f"{secrets}/")
    (tmp_path / "prometheus.yml").write_text(text)
    (tmp_path / "rules").mkdir()
    for name in ("recording_rules.yaml", "alert_rules.yaml"):
        shutil.copy(ROOT / "alerts" / name, tmp_path / "rules" / name)
    result = subprocess.run(
        ["promtool", "check", "config", "prometheus.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_remote_write_is_an_option_of_the_chart_values(tmp_path: Path) -> None:
    from inferwatch.alerts.thresholds import load_thresholds
    from inferwatch.cli.main import main
    from inferwatch.deploy import kubernetes

    committed = yaml.safe_load((ROOT / kubernetes.CHART_VALUES).read_text(encoding="utf-8"))
    assert "remoteWrite" not in committed["prometheus"]["prometheusSpec"]
    assert "alertmanagerSpec" not in committed["alertmanager"]
    url = "http://victoria-metrics.monitoring.svc:8428/api/v1/write"
    assert main(["generate", "kubernetes", "--remote-write-url", url, "-o", str(tmp_path)]) == 0
    values = yaml.safe_load((tmp_path / "chart-values.yaml").read_text(encoding="utf-8"))
    spec = values["prometheus"]["prometheusSpec"]
    assert spec["replicas"] == 2
    assert spec["remoteWrite"] == [
        {
            "url": url,
            "writeRelabelConfigs": [{"action": "labeldrop", "regex": "prometheus_replica"}],
        }
    ]
    assert values["alertmanager"]["alertmanagerSpec"] == {"replicas": 2}
    # Everything else as committed: the option adds, it changes nothing.
    del spec["replicas"], spec["remoteWrite"], values["alertmanager"]["alertmanagerSpec"]
    assert values == committed
    # The manifests themselves are the committed ones.
    plain = kubernetes.files(load_thresholds())
    ha = kubernetes.files(load_thresholds(), kubernetes.Settings(remote_write_url=url))
    del plain[kubernetes.CHART_VALUES], ha[kubernetes.CHART_VALUES]
    assert ha == plain
    with pytest.raises(ValueError, match="remote_write_url"):
        kubernetes.Settings(remote_write_url="victoria-metrics:8428")
