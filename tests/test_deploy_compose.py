"""docker-compose.yml and the configuration it mounts, checked without a Docker engine.

``docker-compose config`` validates and resolves the file (with throwaway secret files in a
temporary directory); the generated Prometheus and Alertmanager configs go through
``promtool``/``amtool``; nothing is built or started.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from inferwatch.alerts.thresholds import load_thresholds
from inferwatch.deploy import compose

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
VERSION = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)[1]
INFERWATCH_SERVICES = {"demo", "exporter", "alert-sink"}
# The `ha` profile's services (docker-compose config prints every profile's).
HA_SERVICES = set(compose.HA_SERVICES)
SERVICES = {
    "prometheus", "alertmanager", "grafana", "redis", "postgres", "loadgen", *INFERWATCH_SERVICES,
    *HA_SERVICES,
}  # fmt: skip
# Test-only values, written to tmp files: they must never show up in the rendered config.
GRAFANA_PASSWORD = "test-grafana-Pw-8c1f"
POSTGRES_PASSWORD = "test-postgres-Pw-3e77"
METRICS_TOKEN = "test-metrics-token-5a0d"


def tool(name: str, package: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        pytest.skip(f"{name} (Debian package {package}) is not installed")
    return exe


def run_config(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``docker-compose config`` with only ``env`` (an empty --env-file hides any .env)."""
    exe = tool("docker-compose", "docker-compose")
    empty = tmp_path / "empty.env"
    empty.write_text("")
    return subprocess.run(
        [exe, "-f", str(COMPOSE_FILE), "--env-file", str(empty), "--profile", "load", "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **env},
    )


def secret_env(tmp_path: Path) -> dict[str, str]:
    env = {}
    for variable, name, secret in (
        ("GRAFANA_ADMIN_PASSWORD_FILE", "grafana_admin_password", GRAFANA_PASSWORD),
        ("POSTGRES_PASSWORD_FILE", "postgres_password", POSTGRES_PASSWORD),
        ("METRICS_TOKEN_FILE", "metrics_token", METRICS_TOKEN),
    ):
        (tmp_path / name).write_text(secret + "\n")
        env[variable] = str(tmp_path / name)
    return env


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("compose")
    result = run_config(tmp, **secret_env(tmp))
    assert result.returncode == 0, result.stderr
    for secret in (GRAFANA_PASSWORD, POSTGRES_PASSWORD, METRICS_TOKEN):
        assert secret not in result.stdout
    return yaml.safe_load(result.stdout)


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source, from either volume syntax docker-compose prints."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        found[target] = source
    return found


def test_every_service_is_there(rendered: dict[str, Any]) -> None:
    assert set(rendered["services"]) == SERVICES
    assert rendered["services"]["loadgen"]["profiles"] == ["load"]
    for name in HA_SERVICES:
        assert rendered["services"][name]["profiles"] == ["ha"], name


def test_images_are_pinned(rendered: dict[str, Any]) -> None:
    for name, service in rendered["services"].items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned"
    for name in INFERWATCH_SERVICES:
        assert rendered["services"][name]["image"] == f"inferwatch:{VERSION}"
        assert "build" in rendered["services"][name]


def test_every_service_has_a_health_check_and_waits_for_healthy_ones(
    rendered: dict[str, Any],
) -> None:
    services = rendered["services"]
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL") and check["test"][1:] != ["NONE"], name
        for dependency, how in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert how == {"condition": "service_healthy"}, f"{name} -> {dependency}: {how}"
    # the graph that matters: nothing scrapes or serves before its backends are healthy
    assert set(services["demo"]["depends_on"]) == {"redis", "postgres"}
    assert set(services["exporter"]["depends_on"]) == {"redis", "postgres"}
    assert "prometheus" in services["grafana"]["depends_on"]
    assert "demo" in services["loadgen"]["depends_on"]


def test_state_lives_in_named_volumes(rendered: dict[str, Any]) -> None:
    declared = set(rendered["volumes"])
    wanted = {
        "prometheus": "/prometheus",
        "alertmanager": "/alertmanager",
        "grafana": "/var/lib/grafana",
        "redis": "/data",
        "postgres": "/var/lib/postgresql/data",
        "alert-sink": "/data",
    }
    for name, path in wanted.items():
        source = mounts(rendered["services"][name]).get(path)
        assert source in declared, f"{name}: {path} is not on a named volume ({source})"


def test_prometheus_alertmanager_and_grafana_mount_the_generated_files(
    rendered: dict[str, Any],
) -> None:
    services = rendered["services"]
    prom = mounts(services["prometheus"])
    assert Path(prom["/etc/prometheus/prometheus.yml"]) == ROOT / compose.PROMETHEUS_FILE
    for name in ("recording_rules.yaml", "alert_rules.yaml"):
        assert Path(prom[f"/etc/prometheus/rules/{name}"]) == ROOT / "alerts" / name
    am = mounts(services["alertmanager"])
    assert Path(am["/etc/alertmanager/alertmanager.yml"]) == ROOT / compose.ALERTMANAGER_FILE
    grafana = mounts(services["grafana"])
    assert Path(grafana["/etc/grafana/provisioning"]) == ROOT / "deploy/grafana/provisioning"
    assert Path(grafana["/var/lib/grafana/dashboards"]) == ROOT / "dashboards"


def test_no_secret_in_clear_and_no_default_password(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    grafana_env = services["grafana"]["environment"]
    assert grafana_env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in grafana_env
    assert "POSTGRES_PASSWORD" not in services["postgres"]["environment"]
    for name, service in services.items():
        text = yaml.safe_dump({k: service.get(k) for k in ("command", "entrypoint", "environment")})
        # a URL with user:password@ in a command line or the environment
        assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", text), f"{name} has a password in clear"
    for name in ("demo", "exporter"):
        assert "postgres_password" in [s["source"] for s in services[name]["secrets"]]


def test_inferwatch_services_listen_on_every_interface_and_ports_stay_local(
    rendered: dict[str, Any],
) -> None:
    for name in INFERWATCH_SERVICES:
        command = rendered["services"][name]["command"]
        assert command[command.index("--host") + 1] == "0.0.0.0", name
    for name, service in rendered["services"].items():
        for port in service.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else port.split(":")[0]
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond this machine"


def test_scrape_targets_are_compose_services(rendered: dict[str, Any]) -> None:
    config = yaml.safe_load((ROOT / compose.PROMETHEUS_FILE).read_text())
    for job in config["scrape_configs"]:
        for target in job["static_configs"][0]["targets"]:
            host, port = target.split(":")
            assert host in rendered["services"], f"{job['job_name']}: {target}"
            assert compose.SERVICES[host] == int(port)
    # the jobs the committed rules require to be up (TargetDown/TargetAbsent) are scraped
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert set(load_thresholds().settings.targets) <= jobs
    # Grafana's provisioned datasource points at the compose service
    datasource = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/inferwatch.yaml").read_text()
    )["datasources"][0]
    assert datasource["url"] == f"http://prometheus:{compose.SERVICES['prometheus']}"


def test_prometheus_scrapes_the_protected_exporter_with_the_shared_secret(
    rendered: dict[str, Any],
) -> None:
    services = rendered["services"]
    secret_of = {
        name: [s["source"] for s in svc.get("secrets", [])] for name, svc in services.items()
    }
    assert "metrics_token" in secret_of["prometheus"] and "metrics_token" in secret_of["exporter"]
    # the exporter reads its token from the secret; its health check presents the same
    env = services["exporter"]["environment"]
    assert env["INFERWATCH_METRICS_TOKEN_FILE"] == compose.METRICS_TOKEN_SECRET
    assert services["exporter"]["healthcheck"]["test"][1:4] == [
        "python", "-m", "inferwatch.deploy.healthcheck",
    ]  # fmt: skip
    config = yaml.safe_load((ROOT / compose.PROMETHEUS_FILE).read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["inferwatch-exporter"]["authorization"] == {
        "type": "Bearer",
        "credentials_file": compose.METRICS_TOKEN_SECRET,
    }
    assert all(
        "authorization" not in j for name, j in jobs.items() if name != "inferwatch-exporter"
    )


@pytest.mark.parametrize(
    ("missing", "variable"),
    [
        ("GRAFANA_ADMIN_PASSWORD_FILE", "GRAFANA"),
        ("POSTGRES_PASSWORD_FILE", "POSTGRES"),
        ("METRICS_TOKEN_FILE", "METRICS"),
    ],
)
def test_config_fails_without_a_password(tmp_path: Path, missing: str, variable: str) -> None:
    env = secret_env(tmp_path)
    del env[missing]
    result = run_config(tmp_path, **env)
    assert result.returncode != 0
    assert f"set {missing} in .env" in result.stderr


def test_generated_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    exe = tool("promtool", "prometheus")
    # The container's layout: /etc/prometheus/prometheus.yml and rules/*.yaml beside it, and
    # the secret mounted where compose mounts it (promtool checks that the file is there).
    secrets = tmp_path / "run" / "secrets"
    secrets.mkdir(parents=True)
    (secrets / "metrics_token").write_text(METRICS_TOKEN + "\n")
    config = (ROOT / compose.PROMETHEUS_FILE).read_text()
    assert config.count("/run/secrets/") == 1
    (tmp_path / "prometheus.yml").write_text(config.replace("/run/secrets/", f"{secrets}/"))
    (tmp_path / "rules").mkdir()
    for name in ("recording_rules.yaml", "alert_rules.yaml"):
        shutil.copy(ROOT / "alerts" / name, tmp_path / "rules" / name)
    result = subprocess.run(
        [exe, "check", "config", "prometheus.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("recording_rules.yaml", "alert_rules.yaml"):
        assert f"Checking rules/{name}" in result.stdout, result.stdout  # the glob found it


def test_generated_alertmanager_config_passes_amtool() -> None:
    exe = tool("amtool", "prometheus-alertmanager")
    path = ROOT / compose.ALERTMANAGER_FILE
    result = subprocess.run(
        [exe, "check-config", str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(path.read_text())
    urls = {hook["url"] for r in config["receivers"] for hook in r["webhook_configs"]}
    assert urls and all(url.startswith(compose.SINK_URL + "/alerts/") for url in urls)
