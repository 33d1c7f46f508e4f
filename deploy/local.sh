# The single-machine deployment's settings and parts, shared by
# deploy/up.sh, deploy/reseal.sh and deploy/down.sh (sourced, not run; the
# caller sets ROOT and SAY). Every setting can be given in the environment:
#   GRIDCASE_RUN_DIR        state directory (default .run): NATS store, logs, pid files, keys
#   GRIDCASE_NATS_PORT      NATS client port (default 4223)
#   GRIDCASE_BIN_DIR        gridcase binaries to run (default: target/release, built by up.sh)
#   GRIDCASE_NATS_SERVER    nats-server binary (default .tools/nats/bin/nats-server)
#   GRIDCASE_SKIP_INSTALL=1 do not run deploy/install-deps.sh (a caller did)
# and every service setting (GRIDCASE_*_ADDR, GRIDCASE_DATABASE_URL, …) as
# the services' --help describes it; the defaults are below.
# $RUN/stream.env, when present, names the case stream the services use
# (deploy/reseal.sh writes it when it moves them to a resealed stream).

RUN="$(realpath -m "${GRIDCASE_RUN_DIR:-$ROOT/.run}")"
mkdir -p "$RUN/logs"
BIN="${GRIDCASE_BIN_DIR:-$ROOT/target/release}"
NATS_BIN="${GRIDCASE_NATS_SERVER:-$ROOT/.tools/nats/bin/nats-server}"

# shellcheck source=deploy/lib.sh
. "$ROOT/deploy/lib.sh"

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
export GRIDCASE_WEB_ADDR="${GRIDCASE_WEB_ADDR:-127.0.0.1:8080}"
export GRIDCASE_WEB_METRICS_ADDR="${GRIDCASE_WEB_METRICS_ADDR:-127.0.0.1:9467}"
export GRIDCASE_WEB_INTAKE_URL="${GRIDCASE_WEB_INTAKE_URL:-http://$GRIDCASE_INTAKE_ADDR}"
export GRIDCASE_WEB_QUERY_URL="${GRIDCASE_WEB_QUERY_URL:-http://$GRIDCASE_QUERY_ADDR}"
export GRIDCASE_OPEN311_ADDR="${GRIDCASE_OPEN311_ADDR:-127.0.0.1:8311}"
export GRIDCASE_OPEN311_METRICS_ADDR="${GRIDCASE_OPEN311_METRICS_ADDR:-127.0.0.1:9468}"
export GRIDCASE_OPEN311_INTAKE_URL="${GRIDCASE_OPEN311_INTAKE_URL:-http://$GRIDCASE_INTAKE_ADDR}"
export GRIDCASE_OPEN311_QUERY_URL="${GRIDCASE_OPEN311_QUERY_URL:-http://$GRIDCASE_QUERY_ADDR}"
export GRIDCASE_LOG_FORMAT="${GRIDCASE_LOG_FORMAT:-json}"
export GRIDCASE_STREAM="${GRIDCASE_STREAM:-GRIDCASE_CASES}"
export GRIDCASE_DISPATCHER_SNAPSHOT_BUCKET="${GRIDCASE_DISPATCHER_SNAPSHOT_BUCKET:-gridcase-dispatcher}"
# A resealed deployment's stream wins over the environment: a stale
# GRIDCASE_STREAM would point at the retired one. (deploy/reseal.sh writes
# the file; GRIDCASE_RESEAL_PHASE says how far the reseal got.)
if [ -f "$RUN/stream.env" ]; then
  # shellcheck source=/dev/null
  . "$RUN/stream.env"
  case "${GRIDCASE_RESEAL_PHASE:-}" in
    switched | deleted)
      export GRIDCASE_STREAM="$GRIDCASE_RESEAL_TO" GRIDCASE_DISPATCHER_SNAPSHOT_BUCKET="$GRIDCASE_RESEAL_TO_SNAPSHOTS"
      ;;
  esac
fi

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

# Partner systems' API keys (the Open311 gateway's callers). Unless
# GRIDCASE_AUTH_API_KEYS_FILE names a key file, one is kept here with one
# demonstration partner for the whole demo county, whose key (readable by
# this user only) is in $RUN/partner-demo.key. Add and revoke keys with
# `gridctl api-key new|revoke`; the services read the file again on change.
# (deploy/up.sh makes them once gridctl is built.)
export GRIDCASE_AUTH_API_KEYS_FILE="${GRIDCASE_AUTH_API_KEYS_FILE:-$RUN/api-keys}"

# nats-server with deploy/nats/nats-server.conf (JetStream, fsync before
# every acknowledgement), unless it runs already.
start_nats() {
  if ! alive nats; then
    say "starting nats-server on 127.0.0.1:$NATS_PORT"
    start nats "$NATS_BIN" -c "$ROOT/deploy/nats/nats-server.conf" -a 127.0.0.1 -p "$NATS_PORT" -sd "$RUN/nats"
    wait_for_port nats "127.0.0.1:$NATS_PORT"
  fi
}

# The services (not NATS), stopped in the order that loses no work: the
# dispatcher and the projection read what intake writes.
stop_services() {
  stop open311
  stop web
  stop dispatcher
  stop projection
  stop intake
}

# (Re)start every service with the settings above.
start_services() {
  stop intake
  say "starting gridcase-intake on $GRIDCASE_INTAKE_ADDR (stream $GRIDCASE_STREAM)"
  start intake "$BIN/gridcase-intake"
  wait_for_port intake "$GRIDCASE_INTAKE_ADDR"

  stop projection
  say "starting gridcase-projection (queries on $GRIDCASE_QUERY_ADDR)"
  start projection "$BIN/gridcase-projection" serve
  wait_for_port projection "$GRIDCASE_QUERY_ADDR"

  stop dispatcher
  say "starting gridcase-dispatcher (health on $GRIDCASE_DISPATCHER_ADDR)"
  start dispatcher "$BIN/gridcase-dispatcher"
  wait_for_port dispatcher "$GRIDCASE_DISPATCHER_ADDR"

  stop web
  say "starting gridcase-web (the console) on $GRIDCASE_WEB_ADDR"
  start web "$BIN/gridcase-web"
  wait_for_port web "$GRIDCASE_WEB_ADDR"

  stop open311
  say "starting gridcase-open311 (the Open311 gateway) on $GRIDCASE_OPEN311_ADDR"
  start open311 "$BIN/gridcase-open311"
  wait_for_port open311 "$GRIDCASE_OPEN311_ADDR"
}
