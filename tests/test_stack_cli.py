"""`inferwatch stack up` as a new user meets it: Ctrl-C stops every component cleanly even
when its output went to a pipe that is gone, the help names every default, the status line
says what it means, and a demonstration's notifications come as fast as its alerts."""

from __future__ import annotations

import argparse
import os
import re
import select
import signal
import subprocess
from pathlib import Path

import psutil
import yaml

from inferwatch.cli.main import build_parser
from inferwatch.stack import StackSettings, configs
from inferwatch.stack.status import StackStatus
from tests.support import wait_until
from tests.support.amtool import amtool
from tests.test_stack import ports
from tests.test_stack_orphans import CLI_COMPONENTS, gone, stack_up

STOPPED = re.compile(r"\[inferwatch stack\] stopped with (\w+) in [\d.]+ s: (.+)\n\Z")
# What each component logs when it shuts down cleanly (the exporter says nothing).
GRACEFUL = {
    "prometheus": 'msg="See you next time!"',
    "alertmanager": 'msg="Received SIGTERM, exiting gracefully..."',
    "redis": "Redis is now ready to exit, bye bye...",
    "postgres": "LOG:  database system is shut down",
    "demo": "INFO:     Finished server process",
    "alert-sink": "INFO:     Finished server process",
}


def test_ctrl_c_stops_cleanly_when_the_pipe_of_its_output_is_gone(
    tmp_path: Path, stack_dir: Path
) -> None:
    """`stack up | tee log`, then Ctrl-C: tee dies with it, so every message written while
    stopping hits a closed pipe. The stop must run anyway, each component stopped by its
    own signal, none killed."""
    reader, writer = os.pipe()
    err = tmp_path / "stderr"
    with err.open("wb") as stderr:
        runner = subprocess.Popen(stack_up(stack_dir, ports()), stdout=writer, stderr=stderr)
    os.close(writer)
    procs: list[psutil.Process] = []
    try:
        out = b""

        def healthy() -> bool:
            nonlocal out
            if select.select([reader], [], [], 0.2)[0]:
                out += os.read(reader, 65536)
            return b"[7/7] prometheus healthy" in out or runner.poll() is not None

        wait_until(healthy, 180, message=lambda: f"every component; said: {out.decode()}")
        assert runner.poll() is None, out.decode() + err.read_text()
        procs = psutil.Process(runner.pid).children(recursive=True)
        os.close(reader)  # tee is gone: every later write to stdout fails (EPIPE)
        reader = -1
        runner.send_signal(signal.SIGINT)
        assert runner.wait(timeout=120) == 0, err.read_text()
    finally:
        if reader != -1:
            os.close(reader)
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        for proc in procs:
            if not gone(proc):
                proc.kill()
    logs = stack_dir / "logs"
    ends = {}
    for name in CLI_COMPONENTS:
        found = STOPPED.search((logs / f"{name}.log").read_text(errors="replace"))
        ends[name] = found.groups() if found else None
    clean = {name: ("SIGTERM", "exit status 0") for name in CLI_COMPONENTS}
    clean["postgres"] = ("SIGINT", "exit status 0")  # its fast shutdown: see stack.postgres
    # uvicorn ends its graceful shutdown by raising the signal again, for its parent to see.
    clean["demo"] = clean["alert-sink"] = ("SIGTERM", "exited on SIGTERM")
    assert ends == clean
    # Each in its own words.
    for name, words in GRACEFUL.items():
        assert words in (logs / f"{name}.log").read_text(errors="replace"), name
    assert "Traceback" not in err.read_text()
    wait_until(lambda: all(gone(proc) for proc in procs), 30, message="the stack's processes")
    assert not (stack_dir / "stack.pid").exists()


def _up_parser() -> argparse.ArgumentParser:
    parser = build_parser(["stack"])
    stack = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    actions = next(a for a in stack.choices["stack"]._actions
                   if isinstance(a, argparse._SubParsersAction))  # fmt: skip
    return actions.choices["up"]


def test_every_option_of_stack_up_says_what_it_does_and_its_default() -> None:
    up = _up_parser()
    text = " ".join(up.format_help().split())
    options = [a for a in up._actions if a.option_strings and a.dest != "help"]
    assert len(options) >= 25
    for action in options:
        assert action.help, action.option_strings
        if action.default not in (None, False, []):  # an unset option, a switch that is off
            shown = f"{' '.join(action.help.split())} (default: {action.default})"
            assert shown in text, (action.option_strings, shown)
    assert "--prometheus-port N port of prometheus (default: 9090)" in text
    assert "--no-redis run no Redis: the demo keeps its cache in memory --postgres-url" in text
    assert "(default: None)" not in text and "(default: False)" not in text


def test_status_line_says_what_each_state_means() -> None:
    waiting = StackStatus(3, 5, down=("inferwatch-exporter",), waiting=("prometheus",),
                          firing=(), heartbeat=True, unreachable=("redis",),
                          unreported=("postgres",))  # fmt: skip
    assert waiting.line() == (
        "targets up 3/5 (down: inferwatch-exporter; waiting for first scrape: prometheus)"
        " · backends: redis unreachable, postgres not reported yet"
        " · firing: none besides the Watchdog heartbeat"
    )
    assert not waiting.all_up
    firing = StackStatus(5, 5, (), (), firing=("APIHighErrorRate (critical)",), heartbeat=True)
    assert firing.line() == (
        "targets up 5/5 · firing: APIHighErrorRate (critical), besides the Watchdog heartbeat"
    )
    assert firing.all_up
    starting = StackStatus(0, 0, (), (), firing=(), heartbeat=False)
    assert starting.line() == "no targets loaded yet · firing: none (no Watchdog heartbeat yet)"
    assert not starting.all_up


def _timings(config: Path) -> dict[str, tuple[str, str, str]]:
    """receiver -> (group_wait, group_interval, repeat_interval) of its route."""
    top = yaml.safe_load(config.read_text())["route"]
    found = {}
    for route in [top, *top["routes"]]:
        found[route["receiver"]] = (
            route["group_wait"],
            route["group_interval"],
            route["repeat_interval"],
        )
    return found


def test_alertmanager_timings_are_scaled_with_the_rules(tmp_path: Path) -> None:
    production = StackSettings(data_dir=tmp_path / "production")
    fast = StackSettings(data_dir=tmp_path / "fast", for_scale=0.1, window_scale=0.5)
    chosen = StackSettings(data_dir=tmp_path / "chosen", for_scale=0.1, group_wait="2s")
    for settings in (production, fast, chosen):
        configs.write_all(settings)
        config = settings.config_dir / "alertmanager.yml"
        checked = amtool("check-config", str(config))
        assert checked.returncode == 0, checked.stdout + checked.stderr
    assert _timings(production.config_dir / "alertmanager.yml") == {
        "default": ("30s", "5m", "4h"), "pager": ("10s", "2m", "1h"),
        "chat": ("1m", "10m", "12h"), "heartbeat": ("0s", "30s", "1m"),
    }  # fmt: skip
    # The smaller of the two scales, 0.1: a warning's notification after 6 s, not a minute;
    # a resolution within a minute, not ten.
    assert _timings(fast.config_dir / "alertmanager.yml") == {
        "default": ("3s", "30s", "24m"), "pager": ("1s", "12s", "6m"),
        "chat": ("6s", "1m", "1h12m"), "heartbeat": ("0s", "3s", "6s"),
    }  # fmt: skip
    # An explicit timing wins over the scaled one.
    assert _timings(chosen.config_dir / "alertmanager.yml")["chat"] == ("2s", "1m", "1h12m")
