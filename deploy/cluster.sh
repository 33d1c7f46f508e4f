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
#                                    (start all: every part not running, named as it starts)
#        deploy/cluster.sh env NAME  the environment NAME runs with (for gridctl and scripts)
#        deploy/cluster.sh topology  where everything listens, as KEY=VALUE lines (gridcase-chaos reads them)
#      faults (gridcase-chaos drives them; the network ones need GRIDCASE_CLUSTER_NETNS):
#        deploy/cluster.sh cut A:B…  drop every packet between parts A and B, both ways (nft in their namespaces)
#        deploy/cluster.sh heal      undo every cut and every slow link
#        deploy/cluster.sh slow PART / fast PART
#                                    delay, loss and reordering on PART's link (tc netem where the kernel
#                                    has it; else a 1 Mbit/s htb queue and nft dropping 5 % each way)
#        deploy/cluster.sh pause PART / resume PART
#                                    SIGSTOP / SIGCONT (a node or service that stops for a while)
#        deploy/cluster.sh corrupt nats-N truncate|flip BYTES
#                                    with the node down: cut BYTES off the end of the case stream's last
#                                    message block, or flip the byte BYTES before its end (a lost page cache)
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
#   GRIDCASE_CLUSTER_NETNS      N in 1..250: every nats-server and service in a network namespace of
#                               its own (gc<N>-<part>), on a bridge gc<N>br with 10.213.N.0/24 (nats-K
#                               .K, intake-K .1K, dispatcher-K .2K, projection-K .3K, web-K .4K; this
#                               machine and PostgreSQL .254), so that links can be cut and slowed.
#                               Needs root, iproute2 and nftables (deploy/install-deps.sh --chaos).
#                               Empty (default): everything on 127.0.0.1.
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
NETNS="${GRIDCASE_CLUSTER_NETNS:-}"
if [ -n "$NETNS" ]; then
  case "$NETNS" in *[!0-9]*) say "GRIDCASE_CLUSTER_NETNS must be a number in 1..250, not $NETNS"; exit 2 ;; esac
  if [ "$NETNS" -lt 1 ] || [ "$NETNS" -gt 250 ]; then say "GRIDCASE_CLUSTER_NETNS must be in 1..250"; exit 2; fi
  SUBNET="10.213.$NETNS"
  BRIDGE="gc${NETNS}br"
fi

# The address a part listens on: 127.0.0.1, or its own in its namespace.
part_host() {
  if [ -z "$NETNS" ]; then echo 127.0.0.1; return 0; fi
  case "$1" in
    nats-[123]) echo "$SUBNET.${1#nats-}" ;;
    intake-[12]) echo "$SUBNET.1${1##*-}" ;;
    dispatcher-[12]) echo "$SUBNET.2${1##*-}" ;;
    projection-[12]) echo "$SUBNET.3${1##*-}" ;;
    web-[12]) echo "$SUBNET.4${1##*-}" ;;
    postgres | host) echo "$SUBNET.254" ;;
    *) say "no part named $1"; exit 2 ;;
  esac
}

NATS_PARTS=()
NATS_URLS=""
for i in $(seq 1 "$NODES"); do
  NATS_PARTS+=("nats-$i")
  NATS_URLS="${NATS_URLS:+$NATS_URLS,}nats://$(part_host "nats-$i"):$((BASE + i))"
done
SERVICES=(intake-1 intake-2 projection-1 projection-2 dispatcher-1 dispatcher-2 web-1 web-2)
USERS=(intake dispatcher projection operator steward backup)

mkdir -p "$RUN/logs"

# --- secrets: a development CA and node certificate, NKeys, the token secret

make_secrets() {
  mkdir -p "$SECRETS"
  chmod 700 "$SECRETS"
  local san="IP:127.0.0.1,DNS:localhost"
  if [ -n "$NETNS" ]; then san="$san,IP:$SUBNET.1,IP:$SUBNET.2,IP:$SUBNET.3"; fi
  if [ "$(cat "$SECRETS/node.san" 2>/dev/null)" != "$san" ]; then rm -f "$SECRETS/node.pem"; fi
  if [ ! -s "$SECRETS/node.pem" ]; then
    say "making a development CA and a certificate for the NATS nodes ($san)"
    (
      cd "$SECRETS"
      umask 077
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -keyout ca-key.pem -out ca.pem -subj "/CN=gridcase development CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout node-key.pem -out node.csr -subj "/CN=gridcase-nats" 2>/dev/null
      printf '%s\n' "subjectAltName=$san" \
        "extendedKeyUsage=serverAuth,clientAuth" "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyAgreement" >node.ext
      openssl x509 -req -in node.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 825 \
        -extfile node.ext -out node.pem 2>/dev/null
      rm -f node.csr node.ext ca.srl
      echo "$san" >node.san
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
    local host
    host="$(part_host "nats-$i")"
    export GRIDCASE_NATS_LISTEN="$host:$((BASE + i))"
    export GRIDCASE_NATS_MONITOR="$host:$((BASE + 4000 + i))"
    export GRIDCASE_NATS_CLUSTER_LISTEN="$host:$((BASE + 2000 + i))"
    for j in 1 2 3; do export "GRIDCASE_NATS_ROUTE_$j=nats-route://$(part_host "nats-$j"):$((BASE + 2000 + j))"; done
    export GRIDCASE_NATS_STORE="$RUN/nats-$i"
    export GRIDCASE_NODE_TLS_CERT="$SECRETS/node.pem" GRIDCASE_NODE_TLS_KEY="$SECRETS/node-key.pem" \
      GRIDCASE_NODE_TLS_CA="$SECRETS/ca.pem"
    for user in "${USERS[@]}"; do
      export "GRIDCASE_NKEY_${user^^}=$(cat "$SECRETS/$user.pub")"
    done
    start "nats-$i" $(in_netns "nats-$i") "$NATS_BIN" -c "$RUN/nats-node.conf"
  )
  wait_for_port "nats-$i" "$(part_host "nats-$i"):$((BASE + i))"
}

# JetStream answers on the node's monitoring port once the cluster has a
# meta leader and the node is current.
wait_for_jetstream() {
  local i answer quorum=1
  if [ "$NODES" -gt 1 ]; then quorum=2; fi
  for _ in $(seq 1 150); do
    answer=""
    for i in $(seq 1 "$NODES"); do
      answer="$answer$(http_get "$(part_host "nats-$i")" $((BASE + 4000 + i)) /healthz || true)"
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
  local listen=127.0.0.1
  if [ -n "$NETNS" ]; then
    # The services reach it from their namespaces, over the bridge.
    listen="127.0.0.1,$SUBNET.254"
    grep -q "^host all all $SUBNET.0/24 trust" "$data/pg_hba.conf" \
      || echo "host all all $SUBNET.0/24 trust" | as_postgres_user tee -a "$data/pg_hba.conf" >/dev/null
  fi
  if ! "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
    # Right after a crash the old server's memory may still be held a moment.
    for _ in $(seq 1 50); do
      as_postgres_user "$bin/pg_ctl" -D "$data" -w -t 30 -l "$data/server.log" \
        -o "-p $PG_PORT -c listen_addresses=$listen -k $data" start >/dev/null 2>&1 && break
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
  local name="$1" n="${1##*-}" user="${1%-*}" host db
  host="$(part_host "$name")"
  db="$(part_host postgres)"
  if [ -z "$NETNS" ]; then db=127.0.0.1; fi
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
GRIDCASE_DATABASE_URL=postgres://gridcase@$db:$PG_PORT/gridcase
GRIDCASE_LOG_FORMAT=json
GRIDCASE_INTAKE_ADDR=$host:$((SVC + n))
GRIDCASE_QUERY_ADDR=$host:$((SVC + 10 + n))
GRIDCASE_DISPATCHER_ADDR=$host:$((SVC + 20 + n))
GRIDCASE_DISPATCHER_METRICS_ADDR=$host:$((SVC + 30 + n))
GRIDCASE_INTAKE_METRICS_ADDR=$host:$((SVC + 40 + n))
GRIDCASE_PROJECTION_METRICS_ADDR=$host:$((SVC + 50 + n))
GRIDCASE_WEB_ADDR=$host:$((SVC + 60 + n))
GRIDCASE_WEB_METRICS_ADDR=$host:$((SVC + 70 + n))
GRIDCASE_WEB_INTAKE_URL=http://$(part_host "intake-$n"):$((SVC + n))
GRIDCASE_WEB_QUERY_URL=http://$(part_host "projection-$n"):$((SVC + 10 + n))
EOT
}

service_addr() { # name: where it listens (gRPC)
  local n="${1##*-}" host
  host="$(part_host "$1")"
  case "$1" in
    intake-*) echo "$host:$((SVC + n))" ;;
    projection-*) echo "$host:$((SVC + 10 + n))" ;;
    dispatcher-*) echo "$host:$((SVC + 20 + n))" ;;
    web-*) echo "$host:$((SVC + 60 + n))" ;;
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
    start "$name" $(in_netns "$name") "$binary"
  )
  wait_for_port "$name" "$(service_addr "$name")"
}

# --- network namespaces (GRIDCASE_CLUSTER_NETNS) and the faults on them

# The command prefix that runs a part in its namespace (nothing without).
in_netns() { if [ -n "$NETNS" ]; then echo "ip netns exec gc$NETNS-$1"; fi; }

netns_exists() { ip netns list 2>/dev/null | cut -d' ' -f1 | grep -qx "$1"; }

short_name() { # nats-1 → n1, dispatcher-2 → d2 (interface names are 15 bytes at most)
  echo "${1:0:1}${1##*-}"
}

need_netns() {
  [ -n "$NETNS" ] || { say "$1 needs GRIDCASE_CLUSTER_NETNS (each part in a network namespace of its own)"; exit 2; }
}

# The bridge, and each part's namespace with a veth on it and an nft table
# whose set `cut` holds the addresses it must not exchange a packet with.
netns_up() {
  [ -n "$NETNS" ] || return 0
  [ "$(id -u)" -eq 0 ] || { say "network namespaces need root"; exit 1; }
  command -v nft >/dev/null || { say "nft is missing: run deploy/install-deps.sh --chaos"; exit 1; }
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$SUBNET.254/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
  fi
  local part ns veth
  for part in "${NATS_PARTS[@]}" "${SERVICES[@]}"; do
    ns="gc$NETNS-$part"
    veth="gc${NETNS}h$(short_name "$part")"
    # Whole already (its part may be running in it): keep it. Half made
    # (a run killed on the way): make it again.
    if netns_exists "$ns" && ip link show "$veth" >/dev/null 2>&1; then
      ip link set "$veth" master "$BRIDGE" up
      continue
    fi
    ip netns del "$ns" 2>/dev/null || true
    ip link del "$veth" 2>/dev/null || true
    ip netns add "$ns"
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "$BRIDGE" up
    ip -n "$ns" addr add "$(part_host "$part")/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    ip netns exec "$ns" nft -f - <<EOT
table inet gridcase_chaos {
  set cut { type ipv4_addr; }
  chain input { type filter hook input priority 0; policy accept; ip saddr @cut drop; }
  chain output { type filter hook output priority 0; policy accept; ip daddr @cut drop; }
}
EOT
  done
}

netns_down() {
  [ -n "$NETNS" ] || return 0
  local ns
  for ns in $(ip netns list 2>/dev/null | cut -d' ' -f1 | grep "^gc$NETNS-" || true); do ip netns del "$ns"; done
  ip link del "$BRIDGE" 2>/dev/null || true
}

# cut A:B…: no packet between A and B, either way, until `heal`.
cut_links() {
  need_netns cut
  local pair a b
  for pair in "$@"; do
    a="${pair%%:*}" b="${pair#*:}"
    ip netns exec "gc$NETNS-$a" nft add element inet gridcase_chaos cut "{ $(part_host "$b") }"
    ip netns exec "gc$NETNS-$b" nft add element inet gridcase_chaos cut "{ $(part_host "$a") }"
  done
}

heal_links() {
  need_netns heal
  local part ns
  for part in "${NATS_PARTS[@]}" "${SERVICES[@]}"; do
    ns="gc$NETNS-$part"
    ip netns exec "$ns" nft flush set inet gridcase_chaos cut
    fast_link "$part"
  done
}

# A bad link: netem's delay 200ms ± 50ms (which reorders) and 5 % loss where
# the kernel has netem; otherwise (CONFIG_NET_SCH_NETEM unset, as on some
# virtual machines) a 1 Mbit/s queue and 5 % of packets dropped each way.
slow_link() {
  need_netns slow
  local ns="gc$NETNS-$1"
  if ip netns exec "$ns" tc qdisc replace dev eth0 root netem delay 200ms 50ms loss 5% 2>/dev/null; then
    echo "netem delay 200ms 50ms loss 5%"
    return 0
  fi
  ip netns exec "$ns" tc qdisc replace dev eth0 root handle 1: htb default 10
  ip netns exec "$ns" tc class replace dev eth0 parent 1: classid 1:10 htb rate 1mbit
  ip netns exec "$ns" nft -f - <<EOT
table inet gridcase_slow
delete table inet gridcase_slow
table inet gridcase_slow {
  chain input { type filter hook input priority 1; policy accept; numgen random mod 100 < 5 drop; }
  chain output { type filter hook output priority 1; policy accept; numgen random mod 100 < 5 drop; }
}
EOT
  echo "htb rate 1mbit, nft loss 5% each way (no netem in this kernel)"
}

fast_link() {
  local ns="gc$NETNS-$1"
  ip netns exec "$ns" tc qdisc del dev eth0 root 2>/dev/null || true
  ip netns exec "$ns" nft delete table inet gridcase_slow 2>/dev/null || true
}

pause_part() { # SIGSTOP: the process stops answering, its sockets stay open
  local pid
  if [ "$1" = postgres ]; then pid="$(head -n 1 "$(pg_data)/postmaster.pid")"; kill -STOP -- "-$pid"; return 0; fi
  alive "$1" || { say "$1 is not running"; exit 1; }
  kill -STOP "$(cat "$RUN/$1.pid")"
}

resume_part() {
  local pid
  if [ "$1" = postgres ]; then pid="$(head -n 1 "$(pg_data)/postmaster.pid")"; kill -CONT -- "-$pid"; return 0; fi
  if alive "$1"; then kill -CONT "$(cat "$RUN/$1.pid")"; fi
}

# With nats-N down: damage the end of the case stream's newest message
# block as a machine that lost its page cache might leave it. Prints the
# file and what was done.
corrupt_store() { # nats-N truncate|flip BYTES
  local part="$1" how="$2" bytes="$3" block size offset byte
  case "$part" in nats-[123]) ;; *) say "corrupt takes a nats node, not $part"; exit 2 ;; esac
  if alive "$part"; then say "$part is running: kill it first"; exit 1; fi
  block="$(find "$RUN/$part/jetstream" -path '*/jetstream/GRIDCASE/streams/GRIDCASE_CASES/msgs/*.blk' 2>/dev/null \
    | awk -F/ '{ n = $NF; sub(/\.blk$/, "", n); print n "\t" $0 }' | sort -n | tail -n 1 | cut -f2)"
  [ -n "$block" ] || { say "$part holds no message block of GRIDCASE_CASES"; exit 1; }
  size="$(stat -c %s "$block")"
  case "$how" in
    truncate)
      if [ "$bytes" -gt "$size" ]; then bytes="$size"; fi
      truncate -s "$((size - bytes))" "$block"
      echo "$block: $size → $((size - bytes)) bytes" ;;
    flip)
      [ "$size" -gt 0 ] || { echo "$block: empty, nothing to flip"; return 0; }
      if [ "$bytes" -gt "$size" ] || [ "$bytes" -lt 1 ]; then bytes="$size"; fi
      offset=$((size - bytes))
      byte="$(od -An -tu1 -j "$offset" -N 1 "$block" | tr -d ' ')"
      printf "$(printf '\\%03o' $((byte ^ 0xff)))" | dd of="$block" bs=1 seek="$offset" conv=notrunc status=none
      echo "$block: byte at $offset of $size flipped ($byte → $((byte ^ 0xff)))" ;;
    *) say "corrupt: truncate or flip, not $how"; exit 2 ;;
  esac
}

# --- parts by name

start_part() {
  case "$1" in
    all) # every part not running (a supervisor's restart, as systemd's Restart=on-failure)
      local part
      for part in "${NATS_PARTS[@]}" postgres "${SERVICES[@]}"; do
        if [ "$part" = postgres ]; then "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && continue
        else alive "$part" && continue; fi
        echo "$part"
        start_part "$part"
      done ;;
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
  for i in $(seq 1 "$NODES"); do monitor="${monitor:+$monitor,}$(part_host "nats-$i"):$((BASE + 4000 + i))"; done
  cat <<EOT
RUN=$RUN
NODES=$NODES
NETNS=$NETNS
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
        nats-*) printf '%-13s up    nats://%s:%s (monitoring http://%s:%s)\n' "$part" "$(part_host "$part")" \
          $((BASE + ${part#nats-})) "$(part_host "$part")" $((BASE + 4000 + ${part#nats-})) ;;
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
  netns_up
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
  netns_down
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
  cut) shift; cut_links "$@" ;;
  heal) heal_links ;;
  slow) need_netns slow; slow_link "${2:?which part}" ;;
  fast) need_netns fast; fast_link "${2:?which part}" ;;
  pause) pause_part "${2:?which part}" ;;
  resume) resume_part "${2:?which part}" ;;
  corrupt) corrupt_store "${2:?which node}" "${3:?truncate or flip}" "${4:?how many bytes}" ;;
  *) sed -n '2,50p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
