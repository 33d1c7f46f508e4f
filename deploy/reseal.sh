#!/usr/bin/env bash
# Reseals the deployment deploy/up.sh runs: copies its case stream into a
# new one with every resident's contact details sealed, and moves the
# services over. For history written before sealing (which keeps contact
# details in clear) that must become erasable.
#   1. stops intake, the projection and the dispatcher (NATS stays up);
#   2. gridctl log reseal: verifies every chain of the old stream, copies it
#      (contact details sealed, their chains re-sealed; the old stream gives
#      up its subjects), verifies every chain of the new one and that no
#      filing in it holds clear text;
#   3. records the new stream and a new dispatcher snapshot bucket in
#      $RUN/stream.env, which up.sh and this script read from then on;
#   4. rebuilds the read models from the new stream (gridcase-projection
#      rebuild: they held the old hashes and masked copies of clear details);
#   5. starts the services again, on the new stream;
#   6. with --delete-old: deletes the old stream and the old snapshot
#      bucket (gridctl log delete-retired). Only then is the old clear text
#      gone from NATS (backups of the store keep theirs).
# Run it again after a failure: each step goes on from where it stopped
# (an interrupted copy resumes). Run it again with --delete-old later to
# delete the old stream once the new one has proved itself.
#
# Usage: deploy/reseal.sh [--to-stream NAME] [--snapshot-bucket NAME] [--delete-old]
#   --to-stream NAME        the new stream (default: the current one's name + _SEALED)
#   --snapshot-bucket NAME  the dispatcher's new snapshot bucket (default: the current + -sealed)
#   --delete-old            delete the old stream and snapshot bucket after the switch
# Settings: as deploy/up.sh (deploy/local.sh lists them).
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SAY=reseal
TO_STREAM="" TO_BUCKET="" DELETE_OLD=no
while [ "$#" -gt 0 ]; do
  case "$1" in
    --to-stream) TO_STREAM="${2:?--to-stream needs a name}"; shift 2 ;;
    --snapshot-bucket) TO_BUCKET="${2:?--snapshot-bucket needs a name}"; shift 2 ;;
    --delete-old) DELETE_OLD=yes; shift ;;
    -h | --help) sed -n '2,/^set -E/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "reseal: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
# shellcheck source=deploy/local.sh
. "$ROOT/deploy/local.sh"
trap 'say "FAILED (line $LINENO): $BASH_COMMAND; run this again to go on from here"' ERR
GRIDCTL="$BIN/gridctl"
for binary in gridctl gridcase-projection gridcase-intake gridcase-dispatcher; do
  [ -x "$BIN/$binary" ] || { say "$BIN/$binary is missing: run deploy/up.sh first"; exit 1; }
done

# Where this deployment stands: $RUN/stream.env records a reseal once its
# copy is complete (GRIDCASE_RESEAL_PHASE copied, switched, deleted).
PHASE="${GRIDCASE_RESEAL_PHASE:-}"
if [ -n "$PHASE" ]; then
  OLD="$GRIDCASE_RESEALED_FROM" OLD_BUCKET="$GRIDCASE_RESEALED_FROM_SNAPSHOTS"
  NEW="$GRIDCASE_STREAM" NEW_BUCKET="$GRIDCASE_DISPATCHER_SNAPSHOT_BUCKET"
  if [ -n "$TO_STREAM" ] && [ "$TO_STREAM" != "$NEW" ]; then
    say "this deployment was resealed into $NEW already (from $OLD); it cannot be resealed into $TO_STREAM"
    exit 2
  fi
else
  OLD="$GRIDCASE_STREAM" OLD_BUCKET="$GRIDCASE_DISPATCHER_SNAPSHOT_BUCKET"
  NEW="${TO_STREAM:-${OLD}_SEALED}" NEW_BUCKET="${TO_BUCKET:-${OLD_BUCKET}-sealed}"
fi

record() {
  local file="$RUN/stream.env"
  cat >"$file.tmp" <<EOT
# Written by deploy/reseal.sh ($(date -u +%FT%TZ)): the services run on the
# resealed stream; up.sh and reseal.sh read this file.
export GRIDCASE_STREAM=$NEW
export GRIDCASE_DISPATCHER_SNAPSHOT_BUCKET=$NEW_BUCKET
GRIDCASE_RESEALED_FROM=$OLD
GRIDCASE_RESEALED_FROM_SNAPSHOTS=$OLD_BUCKET
GRIDCASE_RESEAL_PHASE=$1
EOT
  mv "$file.tmp" "$file"
  PHASE="$1"
}

start_nats
if [ -z "$PHASE" ]; then
  say "stopping the services"
  stop_services
  say "resealing $OLD into $NEW"
  "$GRIDCTL" log reseal --stream "$OLD" --to-stream "$NEW" --master-key-file "$GRIDCASE_MASTER_KEY_FILE"
  record copied
fi
export GRIDCASE_STREAM="$NEW" GRIDCASE_DISPATCHER_SNAPSHOT_BUCKET="$NEW_BUCKET"
if [ "$PHASE" = copied ]; then
  stop_services
  say "rebuilding the read models from $NEW"
  "$BIN/gridcase-projection" --no-metrics rebuild
  start_services
  record switched
  say "the services run on $NEW"
fi
if [ "$DELETE_OLD" = yes ] && [ "$PHASE" = switched ]; then
  say "deleting the old stream $OLD and snapshot bucket $OLD_BUCKET"
  "$GRIDCTL" log delete-retired --stream "$NEW" --retired "$OLD" --old-snapshot-bucket "$OLD_BUCKET"
  record deleted
fi
case "$PHASE" in
  switched) say "done: the services run on $NEW; $OLD keeps its clear text until deploy/reseal.sh --delete-old" ;;
  deleted) say "done: the services run on $NEW; $OLD and its snapshot bucket are deleted" ;;
esac
