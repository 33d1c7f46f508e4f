#!/usr/bin/env bash
# The cluster topology on one machine, for development, tests and the chaos
# harness (gridcase-chaos):
#   * three nats-servers forming the JetStream cluster "gridcase" (each its
#     own store, fsync before every acknowledgement, routes between the
#     three), clients and routes over TLS (a development CA made here), the
#     NKey users and permissions of deploy/nats/permissions.conf;
#   * a PostgreSQL server of its own (own data directory and port);
#   * two of each gridcase service: intake-1/2, dispatcher-1/2 (both
#     active), projection-1/2 (one writes, one stands by), web-1/2 (the
#     console, each in front of intake-N and projection-N), on the case
#     stream with three replicas.
#
# Usage: deploy/cluster.sh up        install, build, start everything (again: restart the services)
#        deploy/cluster.sh down      stop everything (state stays in the run directory)
#        deploy/cluster.sh status    what runs, and where
#        deploy/cluster.sh start NAME | stop NAME | kill NAME
#                                    one part: nats-1..3, postgres, intake-1/2, dispatcher-1/2, projection-1/2, web-1/2
#        deploy/cluster.sh env NAME  the environment NAME runs with (for gridctl and scripts)
#        deploy/cluster.sh topology  where everything listens, as KEY=VALUE lines (gridcase-chaos reads them)
#
# Settings (environment):
#   GRIDCASE_CLUSTER_NODES      3 (default), or 1: the same topology on a single nats-server
#                               (stream replicas 1), for comparing the two
#   GRIDCASE_CLUSTER_DIR        run directory (default .run/cluster): stores, logs, pid files, secrets
#   GRIDCASE_CLUSTER_PORT_BASE  B (default 4230): NATS clients B+1..3, routes B+2001..3,
#                               monitoring B+4001..3, PostgreSQL B+1212 (5442)
#   GRIDCASE_CLUSTER_SERVICE_PORT_BASE  S (default 50060): intake S+1/2, queries S+11/12,
#                               dispatcher health S+21/22; metrics: dispatcher S+31/32,
#                               intake S+41/42, projection S+51/52; the console (HTTP)
#                               S+61/62, its metrics S+71/72
#   GRIDCASE_BIN_DIR            gridcase binaries to run (default: build target/release)
#   GRIDCASE_SKIP_INSTALL=1     do not run deploy/install-deps.sh (a caller did)
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="$(realpath -m "${GRIDCASE_CLUSTER_DIR:-$ROOT/.run/cluster}")"
SAY=cluster
# shellcheck source=deploy/lib.sh
. "$ROOT/deploy/lib.sh"
trap 'say "FAILED (line $LINENO): $BASH_COMMAND"' ERR

BASE="${GRIDCASE_CLUSTER_PORT_BASE:-4230}"
SVC="${GRIDCASE_CLUSTER_SERVICE_PORT_BASE:-50060}"
BIN="${GRIDCASE_BIN_DIR:-$ROOT/target/release}"
NATS_BIN="$ROOT/.tools/nats/bin/nats-server"
SECRETS="$RUN/secrets"
PG_PORT=$((BASE + 1212))
NODES="${GRIDCASE_CLUSTER_NODES:-3}"
case "$NODES" in 1 | 3) ;; *) say "GRIDCASE_CLUSTER_NODES must be 1 or 3, not $NODES"; exit 2 ;; esac
NATS_PARTS=()
NATS_URLS=""
for i in $(seq 1 "$NODES"); do
  NATS_PARTS+=("nats-$i")
  NATS_URLS="${NATS_URLS:+$NATS_URLS,}nats://127.0.0.1:$((BASE + i))"
done
SERVICES=(intake-1 intake-2 projection-1 projection-2 dispatcher-1 dispatcher-2 web-1 web-2)
USERS=(intake dispatcher projection operator steward backup)

mkdir -p "$RUN/logs"

# --- secrets: a development CA and node certificate, NKeys, the token secret

make_secrets() {
  mkdir -p "$SECRETS"
  chmod 700 "$SECRETS"
  if [ ! -s "$SECRETS/node.pem" ]; then
    say "making a development CA and a certificate for the NATS nodes (127.0.0.1, localhost)"
    (
      cd "$SECRETS"
      umask 077
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -keyout ca-key.pem -out ca.pem -subj "/CN=gridcase development CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout node-key.pem -out node.csr -subj "/CN=gridcase-nats" 2>/dev/null
      printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" \
        "extendedKeyUsage=serverAuth,clientAuth" "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyAgreement" >node.ext
      openssl x509 -req -in node.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 825 \
        -extfile node.ext -out node.pem 2>/dev/null
      rm -f node.csr node.ext ca.srl
    )
  fi
  for user in "${USERS[@]}"; do
    if [ ! -s "$SECRETS/$user.nk" ]; then
      "$BIN/gridctl" nats-key new "$SECRETS/$user.nk" >"$SECRETS/$user.pub"
    fi
  done
  if [ ! -s "$SECRETS/dev-token-secret" ]; then
    (umask 077; head -c 48 /dev/urandom | base64 -w0 >"$SECRETS/dev-token-secret")
  fi
  if [ ! -s "$SECRETS/master-keys" ]; then
    (umask 077; new_master_key >"$SECRETS/master-keys")
  fi
}

# --- NATS

# Three nodes run the shipped node configuration as it is
# (deploy/nats/cluster/nats-node.conf), with this machine's ports and paths
# in their environment; one node runs a configuration written here (the
# same, without the cluster block).
nats_config() { # node number
  local i="$1"
  cp "$ROOT/deploy/nats/permissions.conf" "$RUN/permissions.conf"
  if [ "$NODES" -gt 1 ]; then
    cp "$ROOT/deploy/nats/cluster/nats-node.conf" "$RUN/nats-node.conf"
    return 0
  fi
  cat >"$RUN/nats-node.conf" <<EOT
# Written by deploy/cluster.sh: deploy/nats/cluster/nats-node.conf without the
# cluster block, for the single-node comparison.
server_name: \$GRIDCASE_NATS_NAME
listen: \$GRIDCASE_NATS_LISTEN
http: \$GRIDCASE_NATS_MONITOR
max_payload: 1MB
jetstream {
  store_dir: \$GRIDCASE_NATS_STORE
  sync_interval: always
}
tls {
  cert_file: \$GRIDCASE_NODE_TLS_CERT
  key_file: \$GRIDCASE_NODE_TLS_KEY
  ca_file: \$GRIDCASE_NODE_TLS_CA
  timeout: 2
}
include permissions.conf
EOT
}

start_nats() { # node number
  local i="$1" j
  alive "nats-$i" && return 0
  nats_config "$i"
  (
    export GRIDCASE_NATS_NAME="gridcase-nats-$i"
    export GRIDCASE_NATS_LISTEN="127.0.0.1:$((BASE + i))"
    export GRIDCASE_NATS_MONITOR="127.0.0.1:$((BASE + 4000 + i))"
    export GRIDCASE_NATS_CLUSTER_LISTEN="127.0.0.1:$((BASE + 2000 + i))"
    for j in 1 2 3; do export "GRIDCASE_NATS_ROUTE_$j=nats-route://127.0.0.1:$((BASE + 2000 + j))"; done
    export GRIDCASE_NATS_STORE="$RUN/nats-$i"
    export GRIDCASE_NODE_TLS_CERT="$SECRETS/node.pem" GRIDCASE_NODE_TLS_KEY="$SECRETS/node-key.pem" \
      GRIDCASE_NODE_TLS_CA="$SECRETS/ca.pem"
    for user in "${USERS[@]}"; do
      export "GRIDCASE_NKEY_${user^^}=$(cat "$SECRETS/$user.pub")"
    done
    start "nats-$i" "$NATS_BIN" -c "$RUN/nats-node.conf"
  )
  wait_for_port "nats-$i" "127.0.0.1:$((BASE + i))"
}

# JetStream answers on the node's monitoring port once the cluster has a
# meta leader and the node is current.
wait_for_jetstream() {
  local i answer quorum=1
  if [ "$NODES" -gt 1 ]; then quorum=2; fi
  for _ in $(seq 1 150); do
    answer=""
    for i in $(seq 1 "$NODES"); do
      answer="$answer$(http_get 127.0.0.1 $((BASE + 4000 + i)) /healthz || true)"
    done
    if [ "$(grep -o '"status":"ok"' <<<"$answer" | wc -l)" -ge "$quorum" ]; then return 0; fi
    sleep 0.2
  done
  say "the JetStream cluster did not become ready within 30s; see $RUN/logs/nats-*.log"; exit 1
}

http_get() { # host port path
  (
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$3" "$1" >&3
    cat <&3
  ) 2>/dev/null
}

# --- PostgreSQL of its own

as_postgres_user() {
  if [ "$(id -u)" -eq 0 ]; then setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; else "$@"; fi
}

pg_bin() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  [ -x "$dir/postgres" ] || { say "no PostgreSQL server binaries under /usr/lib/postgresql (run deploy/install-deps.sh)"; exit 1; }
  echo "$dir"
}

pg_data() {
  # The server runs as postgres when this runs as root: its data directory
  # must be reachable by that user.
  if [ "$(id -u)" -eq 0 ] && ! as_postgres_user test -x "$RUN"; then
    echo "/var/tmp/gridcase-cluster-pg-$(printf '%s' "$RUN" | sha256sum | cut -c1-12)"
  else
    echo "$RUN/pg"
  fi
}

start_postgres() {
  local bin data
  bin="$(pg_bin)"
  data="$(pg_data)"
  if [ ! -s "$data/PG_VERSION" ]; then
    say "initialising a PostgreSQL cluster of its own in $data (port $PG_PORT)"
    mkdir -p "$data"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$data"
    chmod 700 "$data"
    as_postgres_user "$bin/initdb" -D "$data" -U gridcase --auth=trust -E UTF8 >"$RUN/logs/initdb.log" 2>&1
  fi
  if ! "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
    # Right after a crash the old server's memory may still be held a moment.
    for _ in $(seq 1 50); do
      as_postgres_user "$bin/pg_ctl" -D "$data" -w -t 30 -l "$data/server.log" \
        -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $data" start >/dev/null 2>&1 && break
      sleep 0.2
    done
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" || { say "PostgreSQL did not start; see $data/server.log"; exit 1; }
  fi
  head -n 1 "$data/postmaster.pid" >"$RUN/postgres.pid"
  if [ "$("$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U gridcase -d postgres -tAc \
      "select 1 from pg_database where datname = 'gridcase'")" != 1 ]; then
    "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U gridcase -d postgres -qc "create database gridcase"
  fi
}

# --- the gridcase services

service_env() { # name: the environment the service runs with
  local name="$1" n="${1##*-}" user="${1%-*}"
  cat <<EOT
GRIDCASE_NATS_URL=$NATS_URLS
GRIDCASE_STREAM_REPLICAS=$NODES
GRIDCASE_NATS_CREDENTIALS=$SECRETS/$user.nk
GRIDCASE_NATS_TLS_CA=$SECRETS/ca.pem
GRIDCASE_REFERENCE_DIR=$ROOT/deploy/reference
GRIDCASE_POLICY=$ROOT/deploy/policy/policy.toml
GRIDCASE_CALENDAR_DIR=$ROOT/deploy/calendar
GRIDCASE_AUTH_DEV_SECRET_FILE=$SECRETS/dev-token-secret
GRIDCASE_MASTER_KEY_FILE=$SECRETS/master-keys
GRIDCASE_DATABASE_URL=postgres://gridcase@127.0.0.1:$PG_PORT/gridcase
GRIDCASE_LOG_FORMAT=json
GRIDCASE_INTAKE_ADDR=127.0.0.1:$((SVC + n))
GRIDCASE_QUERY_ADDR=127.0.0.1:$((SVC + 10 + n))
GRIDCASE_DISPATCHER_ADDR=127.0.0.1:$((SVC + 20 + n))
GRIDCASE_DISPATCHER_METRICS_ADDR=127.0.0.1:$((SVC + 30 + n))
GRIDCASE_INTAKE_METRICS_ADDR=127.0.0.1:$((SVC + 40 + n))
GRIDCASE_PROJECTION_METRICS_ADDR=127.0.0.1:$((SVC + 50 + n))
GRIDCASE_WEB_ADDR=127.0.0.1:$((SVC + 60 + n))
GRIDCASE_WEB_METRICS_ADDR=127.0.0.1:$((SVC + 70 + n))
GRIDCASE_WEB_INTAKE_URL=http://127.0.0.1:$((SVC + n))
GRIDCASE_WEB_QUERY_URL=http://127.0.0.1:$((SVC + 10 + n))
EOT
}

service_addr() { # name: where it listens (gRPC)
  local n="${1##*-}"
  case "$1" in
    intake-*) echo "127.0.0.1:$((SVC + n))" ;;
    projection-*) echo "127.0.0.1:$((SVC + 10 + n))" ;;
    dispatcher-*) echo "127.0.0.1:$((SVC + 20 + n))" ;;
    web-*) echo "127.0.0.1:$((SVC + 60 + n))" ;;
  esac
}

start_service() { # name
  local name="$1" binary
  alive "$name" && return 0
  binary="$BIN/gridcase-${name%-*}"
  (
    set -a
    # shellcheck disable=SC1090
    . <(service_env "$name")
    set +a
    start "$name" "$binary"
  )
  wait_for_port "$name" "$(service_addr "$name")"
}

# --- parts by name

start_part() {
  case "$1" in
    nats-[123]) [ "${1#nats-}" -le "$NODES" ] || { say "no part named $1 with $NODES node(s)"; exit 2; }
      start_nats "${1#nats-}" ;;
    postgres) start_postgres ;;
    intake-[12] | dispatcher-[12] | projection-[12] | web-[12]) start_service "$1" ;;
    *) say "no part named $1"; exit 2 ;;
  esac
}

kill_part() { # SIGKILL: a crash
  if [ "$1" = postgres ]; then
    local data pid
    data="$(pg_data)"
    [ -f "$data/postmaster.pid" ] || return 0
    pid="$(head -n 1 "$data/postmaster.pid")"
    # The postmaster and every backend at once, as a machine losing power
    # would (pg_ctl starts the postmaster in a session of its own).
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    rm -f "$RUN/postgres.pid"
    return 0
  fi
  if alive "$1"; then kill -KILL "$(cat "$RUN/$1.pid")"; fi
  rm -f "$RUN/$1.pid"
}

stop_part() {
  if [ "$1" = postgres ]; then
    local data
    data="$(pg_data)"
    if [ -s "$data/PG_VERSION" ]; then
      as_postgres_user "$(pg_bin)/pg_ctl" -D "$data" -m fast stop >/dev/null 2>&1 || true
    fi
    rm -f "$RUN/postgres.pid"
  else
    stop "$1"
  fi
}

topology() {
  local monitor="" i
  for i in $(seq 1 "$NODES"); do monitor="${monitor:+$monitor,}127.0.0.1:$((BASE + 4000 + i))"; done
  cat <<EOT
RUN=$RUN
NODES=$NODES
NATS_URLS=$NATS_URLS
NATS_MONITOR=$monitor
NATS_TLS_CA=$SECRETS/ca.pem
NATS_OPERATOR_CREDENTIALS=$SECRETS/operator.nk
NATS_STEWARD_CREDENTIALS=$SECRETS/steward.nk
NATS_BACKUP_CREDENTIALS=$SECRETS/backup.nk
DEV_TOKEN_SECRET=$SECRETS/dev-token-secret
DATABASE_URL=postgres://gridcase@127.0.0.1:$PG_PORT/gridcase
INTAKE=$(service_addr intake-1),$(service_addr intake-2)
QUERY=$(service_addr projection-1),$(service_addr projection-2)
DISPATCHER=$(service_addr dispatcher-1),$(service_addr dispatcher-2)
WEB=$(service_addr web-1),$(service_addr web-2)
EOT
}

status() {
  local part
  for part in "${NATS_PARTS[@]}" postgres "${SERVICES[@]}"; do
    if [ "$part" = postgres ]; then
      if "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then echo "postgres      up    127.0.0.1:$PG_PORT"
      else echo "postgres      down"; fi
    elif alive "$part"; then
      case "$part" in
        nats-*) printf '%-13s up    nats://127.0.0.1:%s (monitoring http://127.0.0.1:%s)\n' "$part" \
          $((BASE + ${part#nats-})) $((BASE + 4000 + ${part#nats-})) ;;
        *) printf '%-13s up    %s\n' "$part" "$(service_addr "$part")" ;;
      esac
    else
      printf '%-13s down\n' "$part"
    fi
  done
}

up() {
  # A store written by one node must not become a cluster member's (or the
  # other way round): JetStream does not replicate what a stream held
  # before it joined a cluster. Copy instead (gridctl log copy).
  if [ -f "$RUN/nodes" ] && [ "$(cat "$RUN/nodes")" != "$NODES" ]; then
    say "$RUN holds a $(cat "$RUN/nodes")-node deployment, not a $NODES-node one: use another" \
      "GRIDCASE_CLUSTER_DIR and copy the history with gridctl log copy (README: From one node to three)"
    exit 1
  fi
  echo "$NODES" >"$RUN/nodes"
  [ -n "${GRIDCASE_SKIP_INSTALL:-}" ] || "$ROOT/deploy/install-deps.sh"
  if [ -z "${GRIDCASE_BIN_DIR:-}" ]; then
    say "building the services (release)"
    (cd "$ROOT" && cargo build --release --quiet --bin gridcase-intake --bin gridcase-dispatcher \
      --bin gridcase-projection --bin gridcase-web --bin gridctl)
  fi
  make_secrets
  for i in $(seq 1 "$NODES"); do start_nats "$i"; done
  wait_for_jetstream
  # The break-glass user sets the streams and buckets up (or moves them
  # from one replica to three); no daily user may change them.
  say "case stream, attachment stream and key bucket: $NODES replica(s)"
  GRIDCASE_NATS_URL="$NATS_URLS" GRIDCASE_NATS_CREDENTIALS="$SECRETS/steward.nk" \
    GRIDCASE_NATS_TLS_CA="$SECRETS/ca.pem" GRIDCASE_STREAM_REPLICAS="$NODES" \
    "$BIN/gridctl" log set-replicas >/dev/null
  start_postgres
  # intake-1 first: it creates the streams (three replicas) and the key bucket.
  for name in "${SERVICES[@]}"; do
    stop "$name"
    start_service "$name"
  done
  status
  cat <<EOT
gridcase runs on $NODES nats-server node(s) (run directory $RUN).
  console: http://$(service_addr web-1)/ and http://$(service_addr web-2)/
  gridctl: $BIN/gridctl --addr http://$(service_addr intake-1) --query-addr http://$(service_addr projection-1) …
  tokens:  development secret $SECRETS/dev-token-secret
  stop:    deploy/cluster.sh down
EOT
}

down() {
  local part
  # The services drain at once, each within its grace period.
  for part in web-2 web-1 dispatcher-2 dispatcher-1 projection-2 projection-1 intake-2 intake-1; do stop_part "$part" & done
  wait
  stop_part postgres
  for part in nats-3 nats-2 nats-1; do stop "$part"; done
  say "stopped (state kept in $RUN)"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  start) start_part "${2:?which part}" ;;
  stop) stop_part "${2:?which part}" ;;
  kill) kill_part "${2:?which part}" ;;
  env) service_env "${2:?which service}" | sed 's/^/export /' ;;
  topology) topology ;;
  *) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
