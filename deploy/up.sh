#!/usr/bin/env bash
# Brings gridcase up on this machine, from nothing:
#   1. installs what it needs (deploy/install-deps.sh: nats-server, PostgreSQL),
#   2. builds the services (release),
#   3. starts nats-server with deploy/nats/nats-server.conf (JetStream, fsync
#      before every acknowledgement) and every gridcase service,
#   4. prints where each one listens.
# Run it again to restart the services; deploy/down.sh stops everything.
# State lives in .run/ (NATS store, logs, pid files, keys); the settings,
# and how to change them, are in deploy/local.sh.
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SAY=up
# shellcheck source=deploy/local.sh
. "$ROOT/deploy/local.sh"
trap 'say "FAILED (line $LINENO): $BASH_COMMAND"' ERR
case "${GRIDCASE_RESEAL_PHASE:-}" in
  copying | copied)
    say "a reseal of $GRIDCASE_RESEAL_FROM into $GRIDCASE_RESEAL_TO is under way: run deploy/reseal.sh to finish it"
    say "(the services start on the new stream once it is copied and the read models are rebuilt)"
    exit 1
    ;;
esac

if [ "${GRIDCASE_SKIP_INSTALL:-}" != 1 ]; then
  deploy/install-deps.sh
fi

if [ -z "${GRIDCASE_BIN_DIR:-}" ]; then
  say "building the services (release)"
  cargo build --release --quiet --bin gridcase-intake --bin gridcase-dispatcher --bin gridcase-projection --bin gridcase-web --bin gridcase-open311 --bin gridctl
fi

# The demonstration partner's key is made with gridctl, built just now.
if [ "$GRIDCASE_AUTH_API_KEYS_FILE" = "$RUN/api-keys" ] && [ ! -s "$RUN/partner-demo.key" ]; then
  rm -f "$GRIDCASE_AUTH_API_KEYS_FILE"
  (umask 077; "$BIN/gridctl" api-key new --file "$GRIDCASE_AUTH_API_KEYS_FILE" --id demo \
    --subject partner-demo --org org-partner-demo --territory 990101 >"$RUN/partner-demo.key")
fi

start_nats
start_services

GRIDCTL="$BIN/gridctl"
cat <<EOT
gridcase is up.
  console          http://$GRIDCASE_WEB_ADDR/   (the command centre's board, desk, cases and ledgers;
                   development sign-in: pick a role, e.g. command centre of 990101001)
                   metrics http://$GRIDCASE_WEB_METRICS_ADDR/metrics
  Open311          http://$GRIDCASE_OPEN311_ADDR/services.xml   (GeoReport v2 and FixMyStreet's updates, for partner systems;
                   demo partner key: $RUN/partner-demo.key, territory 990101; keys: $GRIDCASE_AUTH_API_KEYS_FILE)
                   metrics http://$GRIDCASE_OPEN311_METRICS_ADDR/metrics
  NATS JetStream   $GRIDCASE_NATS_URL   ($("$NATS_BIN" --version), store $RUN/nats)
  case stream      $GRIDCASE_STREAM
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
