"""The stack's processes never outlive the runner that started them.

Two defences, because a runner killed with SIGKILL runs no clean-up code of its own:

- On Linux every child starts through a few lines of Python that ask the kernel to send it
  SIGTERM when the runner dies (``prctl(PR_SET_PDEATHSIG)``), then ``exec`` the component in
  the same process: the child then shuts down as cleanly as on ``stack down``. The kernel
  sends that signal when the *thread* that forked the child exits, so every child is forked
  by one thread that lives as long as the runner (:func:`spawn`). A child that must not run
  as root (PostgreSQL) switches user in those same lines, before it asks: the kernel clears
  a process's PDEATHSIG whenever its credentials change.
- A pid file in the data directory names the runner and each child with its start time.
  The next start on that directory finds what survived (no PDEATHSIG outside Linux, a child
  that ignored it) and stops it; a pid since reused by an unrelated process has another
  start time, so it is never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

PID_FILE = "stack.pid"
# Start times compare equal for the same process (psutil derives them from the kernel's
# clock ticks since boot); a reused pid starts at least a clock tick (10 ms) later.
_SAME_START = 0.005

# argv: the runner's pid, the user to run as ('' for the runner's), then the component's
# command. Exit 70 (EX_SOFTWARE) without starting it when the runner died before prctl
# took effect: the kernel would never tell.
_LIFELINE = """\
import ctypes, os, signal, sys
if sys.argv[2]:
    import pwd
    user = pwd.getpwnam(sys.argv[2])
    os.initgroups(user.pw_name, user.pw_gid)
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    sys.exit(70)
os.execvp(sys.argv[3], sys.argv[3:])
"""

# One thread forks every child, for the life of the process (see the module docstring).
_FORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inferwatch-stack-fork")


def with_lifeline(command: Sequence[str], user: str | None = None) -> list[str]:
    """``command``, run so that it receives SIGTERM when this process dies (Linux; elsewhere
    ``command`` as it is). The lifeline ``exec``\\ s it: same pid, its own command line.

    ``user``: the account it runs as (this process must be root), switched to before the
    lifeline is set up; the interpreter itself starts as this process's user, so it need
    not be readable by ``user``."""
    if not sys.platform.startswith("linux"):
        if user is not None:
            raise OSError(f"running a component as {user!r} needs Linux")
        return list(command)
    # -I -S: no environment variables, user site or site-packages; ctypes is all it needs.
    lifeline = [sys.executable, "-I", "-S", "-c", _LIFELINE, str(os.getpid()), user or ""]
    return [*lifeline, *command]


def spawn(command: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen(command, **popen)``, forked by the long-lived forking thread."""
    return _FORKER.submit(subprocess.Popen, list(command), **popen).result()


@dataclass(frozen=True)
class Recorded:
    """A process as the pid file names it."""

    name: str
    pid: int
    started: float  # psutil's create_time()

    def process(self) -> psutil.Process | None:
        """The process, if it still runs and is the one recorded (not a reused pid)."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.started) > _SAME_START:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
        except psutil.Error:  # gone, or not ours to look at
            return None
        return proc


def record(name: str, pid: int) -> Recorded | None:
    """``pid`` as the pid file names it (None when it is already gone)."""
    try:
        return Recorded(name, pid, psutil.Process(pid).create_time())
    except psutil.Error:
        return None


class PidFile:
    """``stack.pid`` in a data directory: the runner and its children, rewritten atomically
    whenever a child starts or stops, removed when the stack stops."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / PID_FILE
        self._runner = record("runner", os.getpid())

    def write(self, children: Iterable[tuple[str, int]]) -> None:
        recorded = [r for name, pid in children if (r := record(name, pid)) is not None]
        body = {
            "runner": asdict(self._runner) if self._runner else None,
            "children": [asdict(r) for r in recorded],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=1) + "\n")
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def read(self) -> tuple[Recorded | None, list[Recorded]]:
        """The runner and children recorded (nothing when there is no readable file)."""
        try:
            body = json.loads(self.path.read_text())
            runner = Recorded(**body["runner"]) if body.get("runner") else None
            return runner, [Recorded(**child) for child in body.get("children", [])]
        except (OSError, ValueError, TypeError, KeyError):
            return None, []


@dataclass(frozen=True)
class Previous:
    """What the pid file says about the last stack of a data directory."""

    runner: Recorded | None  # set when that runner is still alive
    survivors: list[Recorded]  # its children still alive, without their runner


def previous_stack(pid_file: PidFile) -> Previous:
    runner, children = pid_file.read()
    alive_runner = runner if runner is not None and runner.process() is not None else None
    if alive_runner is not None:
        return Previous(alive_runner, [])
    return Previous(None, [child for child in children if child.process() is not None])


def terminate(survivors: Iterable[Recorded], timeout: float) -> list[Recorded]:
    """SIGTERM each survivor and its descendants, SIGKILL what is left after ``timeout``
    seconds; the survivors that were signalled. psutil re-checks each process's start time
    before it signals, so a pid reused meanwhile is left alone."""
    signalled, procs = [], []
    for survivor in survivors:
        proc = survivor.process()
        if proc is None:
            continue
        try:
            family = [proc, *proc.children(recursive=True)]
        except psutil.Error:
            continue
        signalled.append(survivor)
        procs += family
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=timeout)
    return signalled
