#!/usr/bin/env bash
# The backup of the deployment deploy/cluster.sh runs: mirrors of the case
# stream and the attachment stream in the NATS account BACKUP, which the
# services' and the operator's credentials cannot reach
# (deploy/nats/permissions.conf), so that even a fully compromised daily
# credential cannot take the history with it.
#
# Usage: deploy/backup.sh init      create the mirrors (as the backup account's user); JetStream
#                                   keeps them in step from then on, history included
#        deploy/backup.sh status    how far each mirror has got
#        deploy/backup.sh restore   restore the case and attachment streams from the mirrors:
#                                   1. stops the services (NATS and PostgreSQL stay up);
#                                   2. gridctl backup restore --replace-damaged, as the break-glass
#                                      user: a stream that no longer keeps its history is deleted
#                                      once the mirror is known to hold every message it still
#                                      holds, then the history is copied back message for message
#                                      at the same sequences and every chain verified;
#                                   3. starts the services (the read models already hold that
#                                      history: writes stopped when the stream was damaged).
# Run restore again after a failure: the copy resumes.
# Settings: as deploy/cluster.sh (GRIDCASE_CLUSTER_DIR, GRIDCASE_BIN_DIR, ports).
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SAY=backup
# shellcheck source=deploy/lib.sh
. "$ROOT/deploy/lib.sh"
trap 'say "FAILED (line $LINENO): $BASH_COMMAND"' ERR
CLUSTER="$ROOT/deploy/cluster.sh"
BIN="${GRIDCASE_BIN_DIR:-$ROOT/target/release}"
[ -x "$BIN/gridctl" ] || { say "$BIN/gridctl is missing: run deploy/cluster.sh up first"; exit 1; }

# Where the deployment listens and keeps its secrets.
declare -A TOPOLOGY
while IFS='=' read -r key value; do TOPOLOGY[$key]="$value"; done < <("$CLUSTER" topology)
export GRIDCASE_NATS_URL="${TOPOLOGY[NATS_URLS]}"
export GRIDCASE_NATS_TLS_CA="${TOPOLOGY[NATS_TLS_CA]}"
export GRIDCASE_STREAM_REPLICAS="${TOPOLOGY[NODES]}"
BACKUP_USER="${TOPOLOGY[NATS_BACKUP_CREDENTIALS]}"
STEWARD="${TOPOLOGY[NATS_STEWARD_CREDENTIALS]}"
SERVICES=(dispatcher-2 dispatcher-1 intake-2 intake-1 projection-2 projection-1)

case "${1:-}" in
  init)
    GRIDCASE_NATS_CREDENTIALS="$BACKUP_USER" "$BIN/gridctl" backup init
    ;;
  status)
    GRIDCASE_NATS_CREDENTIALS="$BACKUP_USER" "$BIN/gridctl" backup status
    ;;
  restore)
    say "stopping the services"
    for part in "${SERVICES[@]}"; do "$CLUSTER" stop "$part" & done
    wait
    say "restoring the case and attachment streams from the backup account"
    GRIDCASE_NATS_CREDENTIALS="$STEWARD" GRIDCASE_BACKUP_CREDENTIALS="$BACKUP_USER" \
      "$BIN/gridctl" backup restore --replace-damaged
    say "starting the services"
    for part in "${SERVICES[@]}"; do "$CLUSTER" start "$part" & done
    wait
    say "restored"
    ;;
  *) sed -n '2,/^set -E/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
esac
