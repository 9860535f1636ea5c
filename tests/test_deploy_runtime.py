"""What runs inside the containers: the secret-file launcher, the health probe and the
load generator's scenarios (checked against the demo's routes; locust itself is not run)."""

from __future__ import annotations

import ast
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from inferwatch.cli import launch
from inferwatch.deploy import healthcheck
from tests.support import free_port

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "p/a:s@s+w=rd%"


def test_password_is_percent_encoded_into_the_url() -> None:
    url = launch.with_password("postgresql://inferwatch@postgres:5432/db", PASSWORD)
    parts = urlsplit(url)
    assert (parts.username, unquote(parts.password or ""), parts.hostname, parts.port) == (
        "inferwatch", PASSWORD, "postgres", 5432
    )  # fmt: skip
    with pytest.raises(ValueError, match="already carries a password"):
        launch.with_password("redis://:x@redis:6379/0", "y")


def test_urls_come_from_the_environment_and_the_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    urls = launch.backend_urls(
        {
            "INFERWATCH_REDIS_URL": "redis://redis:6379/0",
            "INFERWATCH_POSTGRES_URL": "postgresql://u@pg/db",
            "INFERWATCH_POSTGRES_PASSWORD_FILE": str(secret),
        }
    )
    assert urls["redis"] == "redis://redis:6379/0"
    assert unquote(urlsplit(urls["postgres"]).password or "") == PASSWORD
    secret.write_text("")
    with pytest.raises(ValueError, match="empty"):
        launch.backend_urls(
            {"INFERWATCH_POSTGRES_URL": "postgresql://u@pg/db",
             "INFERWATCH_POSTGRES_PASSWORD_FILE": str(secret)}
        )  # fmt: skip


def test_launcher_passes_urls_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr("inferwatch.cli.main.main", lambda args: seen.append(args) or 0)
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD)
    env = {
        "INFERWATCH_POSTGRES_URL": "postgresql://u@pg/db",
        "INFERWATCH_POSTGRES_PASSWORD_FILE": str(secret),
    }
    assert launch.main(["exporter", "--port", "0"], env) == 0
    args = seen.pop()
    assert args[:3] == ["exporter", "--port", "0"]
    assert args[3] == "--postgres-url" and PASSWORD not in args[4]  # encoded, not raw
    # a command without the option runs without the backend and says so, without the URL
    assert launch.main(["alert-sink"], env) == 0
    assert seen.pop() == ["alert-sink"]
    err = capsys.readouterr().err
    assert "has no --postgres-url" in err and "pg/db" not in err


def test_healthcheck_fails_on_a_closed_port() -> None:
    assert healthcheck.main([f"http://127.0.0.1:{free_port()}/healthz"]) == 1
    assert healthcheck.main([]) == 2


def test_locustfile_only_calls_routes_the_demo_has() -> None:
    from inferwatch.demo.app import create_app

    source = (ROOT / "loadtests" / "locustfile.py").read_text()
    tree = ast.parse(source)
    users = [
        node.name
        for node in tree.body
        if isinstance(node, ast.ClassDef)
        and any(getattr(b, "id", None) == "HttpUser" for b in node.bases)
    ]
    assert len(users) >= 2
    called = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and str(node.value).startswith("/v1/")
    }
    routes = {getattr(route, "path", None) for route in create_app().routes}
    assert called and called <= routes, called - routes
