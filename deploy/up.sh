#!/usr/bin/env bash
# Brings gridcase up on this machine, from nothing:
#   1. installs what it needs (deploy/install-deps.sh: nats-server, PostgreSQL),
#   2. builds the services (release),
#   3. starts nats-server with deploy/nats/nats-server.conf (JetStream, fsync
#      before every acknowledgement) and every gridcase service,
#   4. prints where each one listens.
# Run it again to restart the services; deploy/down.sh stops everything.
# State lives in .run/ (NATS store, logs, pid files).
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RUN="$ROOT/.run"
mkdir -p "$RUN/logs"

# 4223, not 4222: a distribution's NATS often holds 4222 already.
NATS_PORT="${GRIDCASE_NATS_PORT:-4223}"
export GRIDCASE_NATS_URL="nats://127.0.0.1:$NATS_PORT"
export GRIDCASE_INTAKE_ADDR="${GRIDCASE_INTAKE_ADDR:-127.0.0.1:50051}"
export GRIDCASE_REFERENCE_DIR="${GRIDCASE_REFERENCE_DIR:-$ROOT/deploy/reference}"
export GRIDCASE_POLICY="${GRIDCASE_POLICY:-$ROOT/deploy/policy/policy.toml}"
export GRIDCASE_CALENDAR_DIR="${GRIDCASE_CALENDAR_DIR:-$ROOT/deploy/calendar}"
export GRIDCASE_DISPATCHER_ADDR="${GRIDCASE_DISPATCHER_ADDR:-127.0.0.1:50053}"
export GRIDCASE_DISPATCHER_METRICS_ADDR="${GRIDCASE_DISPATCHER_METRICS_ADDR:-127.0.0.1:9464}"
export GRIDCASE_DATABASE_URL="${GRIDCASE_DATABASE_URL:-postgres://gridcase:gridcase@127.0.0.1:5432/gridcase}"
export GRIDCASE_QUERY_ADDR="${GRIDCASE_QUERY_ADDR:-127.0.0.1:50052}"
export GRIDCASE_INTAKE_METRICS_ADDR="${GRIDCASE_INTAKE_METRICS_ADDR:-127.0.0.1:9465}"
export GRIDCASE_PROJECTION_METRICS_ADDR="${GRIDCASE_PROJECTION_METRICS_ADDR:-127.0.0.1:9466}"
export GRIDCASE_LOG_FORMAT="${GRIDCASE_LOG_FORMAT:-json}"
# Bearer tokens. This is a development setup: unless GRIDCASE_AUTH_KEYS names
# an identity provider's public keys, the services share a development secret
# (created once, readable by this user only) and `gridctl token` mints tokens
# with it. Production sets GRIDCASE_AUTH_KEYS=KID:EdDSA:/path/key.pem instead.
if [ -z "${GRIDCASE_AUTH_KEYS:-}" ] && [ -z "${GRIDCASE_AUTH_DEV_SECRET_FILE:-}" ]; then
  export GRIDCASE_AUTH_DEV_SECRET_FILE="$RUN/dev-token-secret"
  if [ ! -s "$GRIDCASE_AUTH_DEV_SECRET_FILE" ]; then
    (umask 077; head -c 48 /dev/urandom | base64 -w0 >"$GRIDCASE_AUTH_DEV_SECRET_FILE")
  fi
fi

SAY=up
# shellcheck source=deploy/lib.sh
. "$ROOT/deploy/lib.sh"

# Residents' contact details are sealed under per-case keys wrapped by a
# master key. Unless GRIDCASE_MASTER_KEY_FILE names one, a key made once
# here (readable by this user only) is used. Keep it: without it, sealed
# contact details cannot be read back.
if [ -z "${GRIDCASE_MASTER_KEY_FILE:-}" ]; then
  export GRIDCASE_MASTER_KEY_FILE="$RUN/master-keys"
  if [ ! -s "$GRIDCASE_MASTER_KEY_FILE" ]; then
    (umask 077; new_master_key >"$GRIDCASE_MASTER_KEY_FILE")
  fi
fi
trap 'say "FAILED (line $LINENO): $BASH_COMMAND"' ERR

deploy/install-deps.sh

say "building the services (release)"
cargo build --release --quiet --bin gridcase-intake --bin gridcase-dispatcher --bin gridcase-projection --bin gridctl

if ! alive nats; then
  say "starting nats-server on 127.0.0.1:$NATS_PORT"
  start nats "$ROOT/.tools/nats/bin/nats-server" -c "$ROOT/deploy/nats/nats-server.conf" \
    -a 127.0.0.1 -p "$NATS_PORT" -sd "$RUN/nats"
  wait_for_port nats "127.0.0.1:$NATS_PORT"
fi

stop intake
say "starting gridcase-intake on $GRIDCASE_INTAKE_ADDR"
start intake "$ROOT/target/release/gridcase-intake"
wait_for_port intake "$GRIDCASE_INTAKE_ADDR"

stop projection
say "starting gridcase-projection (queries on $GRIDCASE_QUERY_ADDR)"
start projection "$ROOT/target/release/gridcase-projection" serve
wait_for_port projection "$GRIDCASE_QUERY_ADDR"

stop dispatcher
say "starting gridcase-dispatcher (health on $GRIDCASE_DISPATCHER_ADDR)"
start dispatcher "$ROOT/target/release/gridcase-dispatcher"
wait_for_port dispatcher "$GRIDCASE_DISPATCHER_ADDR"

GRIDCTL="$ROOT/target/release/gridctl"
cat <<EOT
gridcase is up.
  NATS JetStream   $GRIDCASE_NATS_URL   ($("$ROOT/.tools/nats/bin/nats-server" --version), store $RUN/nats)
  PostgreSQL       ${GRIDCASE_DATABASE_URL%%://*}://…@${GRIDCASE_DATABASE_URL##*@}
  intake (gRPC)    $GRIDCASE_INTAKE_ADDR   gridcase.intake.v1.IntakeService, gridcase.cases.v1.CaseService,
                   gridcase.auth.v1.AuthService, grpc.health.v1.Health, reflection
                   metrics http://$GRIDCASE_INTAKE_METRICS_ADDR/metrics
  projection       $GRIDCASE_QUERY_ADDR   gridcase.query.v1.QueryService (read models in schema "read")
                   metrics http://$GRIDCASE_PROJECTION_METRICS_ADDR/metrics
  dispatcher       health $GRIDCASE_DISPATCHER_ADDR (gRPC), metrics http://$GRIDCASE_DISPATCHER_METRICS_ADDR/metrics
                   policy $GRIDCASE_POLICY, calendar $GRIDCASE_CALENDAR_DIR
  master keys      $GRIDCASE_MASTER_KEY_FILE (residents' contact details are sealed under it: back it up)
  gridctl          $GRIDCTL
                   try: $GRIDCTL deadline --tier NORMAL --from 2026-02-13T17:00+08:00
  tokens           ${GRIDCASE_AUTH_DEV_SECRET_FILE:+development secret $GRIDCASE_AUTH_DEV_SECRET_FILE
                   export GRIDCTL_TOKEN=\$($GRIDCTL token --subject cc-op-1 --role command_centre --org cc-990101001 --territory 990101001)}${GRIDCASE_AUTH_KEYS:+identity provider keys $GRIDCASE_AUTH_KEYS}
  walkthrough      deploy/walkthrough.sh (the README's tour, runnable as it stands)
Logs: $RUN/logs/   Stop: deploy/down.sh
EOT
