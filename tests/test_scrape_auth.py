"""Real Prometheus scrapes a token- or password-protected service through the stack's config.

The service is a real uvicorn app using ``MetricsAuth`` (``tests/apps/protected_app.py``).
Prometheus runs with exactly the ``prometheus.yml`` that ``inferwatch stack up --service``
renders (``prometheus_config.render``): with the credentials' files the target is up, without
them it is down with 401, and the secret is in neither that file nor any command line.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from inferwatch.cli.main import build_parser
from inferwatch.cli.stack import _settings
from inferwatch.deploy import healthcheck
from inferwatch.exposition.auth import TOKEN_FILE_ENV
from inferwatch.stack import prometheus_config
from inferwatch.stack.prometheus_api import Prometheus
from inferwatch.stack.settings import Ports, StackSettings
from tests.support import Server, free_port, serve, wait_until
from tests.support.server import LOOPBACK

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "scrape-token-Zq81"  # test-only secrets, written to tmp files
PASSWORD = "scrape-password-Lw42"
USERNAME = "prometheus"
JOB = "ai-service"
# tests/apps/protected_app.py's basic-auth settings (the module builds its app on import)
USERNAME_ENV, PASSWORD_FILE_ENV = "PROTECTED_APP_USERNAME", "PROTECTED_APP_PASSWORD_FILE"

StartService = Callable[[dict[str, str]], Server]


def secret(tmp_path: Path, name: str, value: str) -> Path:
    path = tmp_path / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[StartService]:
    with contextlib.ExitStack() as stack:

        def start(env: dict[str, str]) -> Server:
            port = free_port()
            command = [
                sys.executable, "-m", "uvicorn", "tests.apps.protected_app:app",
                "--host", LOOPBACK, "--port", str(port), "--no-access-log",
            ]  # fmt: skip
            log = tmp_path / f"service-{port}.log"
            return stack.enter_context(serve(command, port=port, log_path=log, env=env))

        yield start


def stack_settings(tmp_path: Path, service: Server, **auth: Any) -> StackSettings:
    # Free ports for the stack's own components: their targets are simply down here.
    ports = Ports(*(free_port() for _ in range(5)))
    return StackSettings(
        data_dir=tmp_path / "stack",
        ports=ports,
        run_demo=False,
        service_targets=(f"{LOOPBACK}:{service.port}",),
        service_job=JOB,
        scrape_interval="1s",
        **auth,
    )


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Callable[[StackSettings], Server]]:
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.skip("prometheus (Debian package) is not installed")
    with contextlib.ExitStack() as stack:

        def start(settings: StackSettings) -> Server:
            config = settings.config_dir / "prometheus.yml"
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(prometheus_config.render(settings))
            port = settings.ports.prometheus
            command = [
                exe, f"--config.file={config}", f"--web.listen-address={LOOPBACK}:{port}",
                f"--storage.tsdb.path={settings.data_dir / 'prometheus'}",
            ]  # fmt: skip
            log = settings.data_dir / "prometheus.log"
            return stack.enter_context(
                serve(command, port=port, log_path=log, ready_path="/-/ready")
            )

        yield start


def service_target(prometheus: Server) -> dict[str, Any] | None:
    """The service's target once it has been scraped at least once."""
    for target in Prometheus(prometheus.url, timeout=10.0).targets():
        if target["labels"]["job"] == JOB and target["health"] != "unknown":
            return dict(target)
    return None


def scraped(prometheus: Server) -> dict[str, Any]:
    return wait_until(
        lambda: service_target(prometheus), 20.0, interval=0.1, message="the service scraped"
    )


def test_bearer_token_from_a_file_brings_the_target_up(
    tmp_path: Path, start_service: StartService, start_prometheus: Callable[..., Server]
) -> None:
    token = secret(tmp_path, "token", TOKEN)
    service = start_service({TOKEN_FILE_ENV: str(token)})
    settings = stack_settings(tmp_path, service, service_token_file=token)
    prometheus = start_prometheus(settings)
    target = scraped(prometheus)
    assert (target["health"], target["lastError"]) == ("up", "")
    # The series the service exposes made it into Prometheus under the service's job.
    query = Prometheus(prometheus.url, timeout=10.0).query(f'up{{job="{JOB}"}}')
    assert [r["value"][1] for r in query] == ["1"]
    config_text = (settings.config_dir / "prometheus.yml").read_text()
    assert TOKEN not in config_text
    job = next(j for j in yaml.safe_load(config_text)["scrape_configs"] if j["job_name"] == JOB)
    assert job["authorization"] == {"type": "Bearer", "credentials_file": str(token)}


def test_basic_auth_password_from_a_file_brings_the_target_up(
    tmp_path: Path, start_service: StartService, start_prometheus: Callable[..., Server]
) -> None:
    password = secret(tmp_path, "password", PASSWORD)
    service = start_service({USERNAME_ENV: USERNAME, PASSWORD_FILE_ENV: str(password)})
    settings = stack_settings(
        tmp_path, service, service_username=USERNAME, service_password_file=password
    )
    target = scraped(start_prometheus(settings))
    assert (target["health"], target["lastError"]) == ("up", "")
    config_text = (settings.config_dir / "prometheus.yml").read_text()
    assert PASSWORD not in config_text
    job = next(j for j in yaml.safe_load(config_text)["scrape_configs"] if j["job_name"] == JOB)
    assert job["basic_auth"] == {"username": USERNAME, "password_file": str(password)}


def test_without_credentials_the_target_is_down_with_401(
    tmp_path: Path, start_service: StartService, start_prometheus: Callable[..., Server]
) -> None:
    token = secret(tmp_path, "token", TOKEN)
    service = start_service({TOKEN_FILE_ENV: str(token)})
    target = scraped(start_prometheus(stack_settings(tmp_path, service)))
    assert target["health"] == "down"
    assert "401 Unauthorized" in target["lastError"]


def parse_up(*options: str) -> argparse.Namespace:
    return build_parser(["stack"]).parse_args(["stack", "up", *options])


def test_stack_up_options_take_the_files_not_the_secrets(tmp_path: Path) -> None:
    token = secret(tmp_path, "token", TOKEN)
    password = secret(tmp_path, "password", PASSWORD)
    settings = _settings(
        parse_up("--service", "127.0.0.1:8001", "--service-token-file", str(token))
    )
    assert settings.service_token_file == token
    auth = prometheus_config.service_auth(settings)
    assert auth == prometheus_config.ScrapeAuth(credentials_file=str(token.resolve()))
    basic = _settings(
        parse_up(
            "--service", "127.0.0.1:8001",
            "--service-username", USERNAME, "--service-password-file", str(password),
        )
    )  # fmt: skip
    assert prometheus_config.service_auth(basic) == prometheus_config.ScrapeAuth(
        username=USERNAME, password_file=str(password.resolve())
    )
    assert TOKEN not in repr(settings) and PASSWORD not in repr(basic)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--service-token-file", "TOKEN"], "needs --service"),
        (["--service", "h:1", "--service-token-file", "TOKEN", "--service-username", "u"],
         "exclude each other"),
        (["--service", "h:1", "--service-username", "u"], "both --service-username"),
        (["--service", "h:1", "--service-token-file", "MISSING"], "cannot read"),
        (["--service", "h:1", "--service-token-file", "EMPTY"], "is empty"),
    ],
)  # fmt: skip
def test_stack_up_refuses_unusable_credentials(
    tmp_path: Path, options: list[str], message: str
) -> None:
    files = {
        "TOKEN": secret(tmp_path, "token", TOKEN),
        "EMPTY": secret(tmp_path, "empty", ""),
        "MISSING": tmp_path / "missing",
    }
    args = parse_up(*(str(files.get(o, o)) for o in options))
    with pytest.raises(ValueError, match=message):
        _settings(args)


def test_container_health_check_presents_the_metrics_token(
    tmp_path: Path, start_service: StartService
) -> None:
    # The compose exporter's health check: the token from the same file, or a 401.
    token = secret(tmp_path, "token", TOKEN)
    service = start_service({TOKEN_FILE_ENV: str(token)})
    url = f"{service.url}/metrics"
    assert healthcheck.main([url], environ={TOKEN_FILE_ENV: str(token)}) == 0
    assert healthcheck.main([url], environ={}) == 1
    wrong = secret(tmp_path, "wrong", "not-the-token")
    assert healthcheck.main([url], environ={TOKEN_FILE_ENV: str(wrong)}) == 1
