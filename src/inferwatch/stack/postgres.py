"""PostgreSQL's own programs (``initdb``, ``postgres``, ``pg_ctl``), found and run the way they
insist on: never as root.

``initdb`` and ``postgres`` refuse to run as root, since a superuser-owned server could be
made to run code as root. When this process is root, they run as the unprivileged
:data:`SERVER_USER` instead (Debian's postgresql package creates it), which must own the
data directory and be able to reach it: each ancestor without search permission for it gets
``o+x`` (search only, never read). Not root: nothing changes.

The local stack runs its PostgreSQL through these functions, and so do the tests
(``tests/support/pg_ctl_as_postgres``, pytest-postgresql's ``pg_ctl``), through::

    python -m inferwatch.stack.postgres pg_ctl ARGS...
"""

from __future__ import annotations

import functools
import glob
import itertools
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SERVER_USER = "postgres"
# Stops the server at once, ending its sessions ("fast" shutdown); SIGTERM ("smart") would
# wait for every client to leave.
FAST_SHUTDOWN = signal.SIGINT
# Overrides the search for pg_ctl (and the programs beside it).
PG_CTL_ENV = "INFERWATCH_PG_CTL"
_HINT = "install it with: sudo apt-get install -y postgresql (or run ./scripts/bootstrap.sh)"


@functools.cache
def bindir() -> Path:
    """The directory of PostgreSQL's server programs: $INFERWATCH_PG_CTL's, ``pg_config
    --bindir``, Debian's newest ``/usr/lib/postgresql/*/bin``, then wherever PATH's
    ``pg_ctl`` is (Debian puts only client wrappers on PATH, hence the search)."""
    if explicit := os.environ.get(PG_CTL_ENV):
        return Path(explicit).parent
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
    for candidate in (*_pg_config_bindir(), *debian):
        if (Path(candidate) / "pg_ctl").is_file():
            return Path(candidate)
    if found := shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    raise FileNotFoundError(f"PostgreSQL's pg_ctl not found; {_HINT}")


def _pg_config_bindir() -> list[str]:
    try:
        done = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [done.stdout.strip()]


def _version(path: str) -> list[int]:
    """``/usr/lib/postgresql/16/bin`` -> [16], for a numeric sort (16 after 9)."""
    return [int(part) for part in re.findall(r"\d+", path)]


def program(name: str) -> str:
    """The full path of one of PostgreSQL's programs (``initdb``, ``postgres``, ...)."""
    path = bindir() / name
    if not path.is_file():
        raise FileNotFoundError(f"PostgreSQL's {name} not found in {path.parent}; {_HINT}")
    return str(path)


def server_user() -> pwd.struct_passwd | None:
    """The account PostgreSQL must run as: None (this process's own) unless this is root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise FileNotFoundError(
            f"PostgreSQL refuses to run as root and there is no {SERVER_USER!r} user to run "
            f"it as; {_HINT}, or run as an unprivileged user"
        ) from None


def _can_search(user: pwd.struct_passwd, path: Path) -> bool:
    """Whether ``user`` may pass through directory ``path`` (the kernel's check, by mode)."""
    st = path.stat()
    if st.st_uid == user.pw_uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in os.getgrouplist(user.pw_name, user.pw_gid):
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def share_with(user: pwd.struct_passwd, directory: Path) -> list[Path]:
    """Make ``directory`` (created if need be) ``user``'s own and reachable by ``user``: the
    ancestors ``user`` could not pass through get ``o+x``. Returns those ancestors."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    os.chown(directory, user.pw_uid, user.pw_gid)
    opened = []
    for ancestor in directory.parents:
        if not _can_search(user, ancestor):
            ancestor.chmod(ancestor.stat().st_mode | stat.S_IXOTH)
            opened.append(ancestor)
    return opened


def give(path: Path, user: pwd.struct_passwd) -> None:
    """Make the file ``path`` ``user``'s (initdb reads its password file as that user)."""
    os.chown(path, user.pw_uid, -1)


def as_user(user: pwd.struct_passwd | None) -> dict[str, Any]:
    """``subprocess`` keyword arguments that run a program as ``user`` (None: as we are),
    from ``/``: PostgreSQL's programs may not be able to enter our working directory."""
    if user is None:
        return {}
    groups = os.getgrouplist(user.pw_name, user.pw_gid)
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": groups, "cwd": "/"}


def _data_dirs(args: Sequence[str]) -> list[Path]:
    """The data directories named in a pg_ctl/initdb command line (``-D DIR``, ``--pgdata``)."""
    found = [Path(value) for flag, value in itertools.pairwise(args) if flag in ("-D", "--pgdata")]
    return found + [Path(arg.split("=", 1)[1]) for arg in args if arg.startswith("--pgdata=")]


def _password_files(args: Sequence[str]) -> list[Path]:
    """The ``--pwfile=FILE`` options, also those inside pg_ctl's ``-o "initdb options"``."""
    return [Path(m) for arg in args for m in re.findall(r"--pwfile=([^\s']+)", arg)]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m inferwatch.stack.postgres PROGRAM ARGS...``: run one of PostgreSQL's
    programs, as :data:`SERVER_USER` when we are root, after handing it the data directory's
    parent (where pytest-postgresql also keeps the server's log) and the files named by
    ``--pwfile``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m inferwatch.stack.postgres PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    try:
        command = [program(args[0]), *args[1:]]
        user = server_user()
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 127
    if user is not None:
        for data_dir in _data_dirs(args):
            share_with(user, data_dir.parent)
        for pwfile in _password_files(args):
            if pwfile.is_file():  # a root-owned temporary file initdb must read
                give(pwfile, user)
    return subprocess.run(command, **as_user(user)).returncode


if __name__ == "__main__":
    sys.exit(main())
