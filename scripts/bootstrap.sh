#!/usr/bin/env bash
# Installs everything inferwatch needs on a Debian/Ubuntu machine, idempotently:
#   - the system packages (Prometheus, Alertmanager, Redis, PostgreSQL, docker-compose
#     for `docker-compose config`) when run as root; otherwise it names the command to run;
#   - a virtual environment in .venv with inferwatch and its test dependencies.
# Re-running it is cheap: packages already present and an up-to-date venv are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(prometheus prometheus-alertmanager victoria-metrics redis-server postgresql docker-compose)
# binary each package provides, to tell whether it is installed without dpkg
declare -A PROVIDES=(
  [prometheus]=promtool
  [prometheus-alertmanager]=amtool
  [victoria-metrics]=victoria-metrics
  [redis-server]=redis-server
  [postgresql]=psql
  [docker-compose]=docker-compose
)

say() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*" >&2; }

missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
  command -v "${PROVIDES[$pkg]}" >/dev/null 2>&1 || missing+=("$pkg")
done

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  say "inferwatch needs Python >= 3.10 as '$PYTHON' (set PYTHON=/path/to/python3 to choose another)"
  exit 1
fi
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)

# The service each package starts on installation (Debian starts the packaged daemons).
declare -A SERVICE=(
  [prometheus]=prometheus
  [prometheus-alertmanager]=prometheus-alertmanager
  [victoria-metrics]=victoria-metrics
  [redis-server]=redis-server
  [postgresql]=postgresql
)

if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    say "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # inferwatch runs its own Prometheus, Alertmanager, Redis and PostgreSQL on its own
    # ports: stop the daemons this run's installation just started (Prometheus and
    # Alertmanager would hold the stack's default ports). Services that were there before
    # are the machine's own business and stay as they are.
    if command -v service >/dev/null 2>&1; then
      for pkg in "${missing[@]}"; do
        svc=${SERVICE[$pkg]:-}
        [[ -n $svc ]] || continue
        if service "$svc" stop >/dev/null 2>&1; then
          say "stopped the $svc service that installing $pkg started (start it again with: service $svc start)"
        fi
      done
    fi
  else
    say "missing system packages: ${missing[*]}"
    say "install them with:  sudo apt-get update && sudo apt-get install -y ${missing[*]}"
    exit 1
  fi
fi

stamp=.venv/.inferwatch-installed
fingerprint=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ ! -x .venv/bin/python ]]; then
  say "creating virtual environment in .venv"
  "$PYTHON" -m venv .venv
fi
if [[ ! -f $stamp || $(cat "$stamp") != "$fingerprint" ]]; then
  say "installing inferwatch and its dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  echo "$fingerprint" > "$stamp"
fi
# SQLAlchemy 2.0 beside the venv's 2.1, for tests/test_pools_sqlalchemy_compat.py
[[ -d .venv/sqlalchemy-2.0/sqlalchemy ]] || .venv/bin/python -m pip install -q --no-deps --target .venv/sqlalchemy-2.0 'sqlalchemy==2.0.*'
say "ready"
