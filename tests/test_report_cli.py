"""``inferwatch report``'s arguments: a Prometheus URL that cannot be one is refused, by name
and with the expected form, before anything is queried."""

from __future__ import annotations

from typing import Any

import pytest

from inferwatch.cli.main import main
from inferwatch.stack.prometheus_api import Prometheus

USAGE_ERROR = "inferwatch report: error: argument --prometheus: must be an http:// or https://"
EXPECTED_FORM = "URL such as http://127.0.0.1:9090"


@pytest.fixture
def queries(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every Prometheus API path the command asks for; none answers."""
    asked: list[str] = []

    def get(self: Prometheus, path: str, params: Any) -> Any:
        asked.append(path)
        raise AssertionError(f"queried {path}")

    monkeypatch.setattr(Prometheus, "_get", get)
    monkeypatch.setattr(Prometheus, "ready", lambda self: asked.append("ready") or False)
    return asked


def report(url: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        main(["report", "--prometheus", url, "--start", "0", "--end", "60"])
    return exited.value.code, capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize(
    ("url", "found"),
    [
        ("127.0.0.1:9090", "no scheme:// in 127.0.0.1:9090"),
        # urllib reads "localhost" as a scheme here; the message does not.
        ("localhost:9090", "no scheme:// in localhost:9090"),
        ("ftp://127.0.0.1:9090", "scheme 'ftp' in ftp://127.0.0.1:9090"),
        ("http://", "no host in http://"),
        ("https://user:hunter2@:9090", "no host in https://:9090"),
    ],
)
def test_a_url_that_is_no_http_url_is_refused_before_any_query(
    url: str, found: str, queries: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, last = report(url, capsys)
    assert (code, last) == (2, f"{USAGE_ERROR} {EXPECTED_FORM}, got {found}")
    assert queries == []


def test_a_malformed_port_is_refused(
    queries: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, last = report("http://127.0.0.1:99999", capsys)
    assert (code, last) == (
        2,
        "inferwatch report: error: argument --prometheus: is not a valid URL: <unparseable URL>",
    )
    assert queries == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:9090", "https://prom.example:443/prefix/"])
def test_an_http_url_goes_on_to_prometheus(
    url: str, queries: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["report", "--prometheus", url, "--start", "0", "--end", "60"])
    assert code == 2
    assert queries == ["ready"]
    assert capsys.readouterr().err == f"inferwatch report: Prometheus at {url} is not ready\n"
