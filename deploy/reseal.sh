#!/usr/bin/env bash
# Reseals the deployment deploy/up.sh runs: copies its case stream into a
# new one with every resident's contact details sealed, and moves the
# services over. For history written before sealing (which keeps contact
# details in clear) that must become erasable.
#   1. stops intake, the projection and the dispatcher (NATS stays up);
#   2. gridctl log reseal: verifies every chain of the old stream, copies it
#      (contact details sealed, their chains re-chained; the old stream gives
#      up its subjects), verifies every chain of the new one and that no
#      filing in it holds clear text;
#   3. records the new stream and a new dispatcher snapshot bucket in
#      $RUN/stream.env (from the start of the copy), which up.sh and this
#      script read from then on (up.sh refuses to start the services while
#      a reseal is under way);
#   4. rebuilds the read models from the new stream (gridcase-projection
#      rebuild: they held the old hashes and masked copies of clear details);
#   5. starts the services again, on the new stream;
#   6. with --delete-old: deletes the old stream and the old snapshot
#      bucket (gridctl log delete-retired). Only then is the old clear text
#      gone from NATS (backups of the store keep theirs).
# Run it again after a failure: each step goes on from where it stopped,
# with the streams and buckets recorded (an interrupted copy resumes). Run it again with --delete-old later to
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

# Where this deployment stands: $RUN/stream.env records a reseal from its
# start (GRIDCASE_RESEAL_PHASE copying, copied, switched, deleted), so a
# run after a failure goes on with the same streams and buckets.
PHASE="${GRIDCASE_RESEAL_PHASE:-}"
if [ -n "$PHASE" ]; then
  OLD="${GRIDCASE_RESEAL_FROM:?stream.env names no GRIDCASE_RESEAL_FROM}"
  OLD_BUCKET="${GRIDCASE_RESEAL_FROM_SNAPSHOTS:?stream.env names no GRIDCASE_RESEAL_FROM_SNAPSHOTS}"
  NEW="${GRIDCASE_RESEAL_TO:?stream.env names no GRIDCASE_RESEAL_TO}"
  NEW_BUCKET="${GRIDCASE_RESEAL_TO_SNAPSHOTS:?stream.env names no GRIDCASE_RESEAL_TO_SNAPSHOTS}"
  if { [ -n "$TO_STREAM" ] && [ "$TO_STREAM" != "$NEW" ]; } || { [ -n "$TO_BUCKET" ] && [ "$TO_BUCKET" != "$NEW_BUCKET" ]; }; then
    say "this deployment's reseal goes from $OLD into $NEW (snapshots $NEW_BUCKET), as $RUN/stream.env records; it cannot change now"
    exit 2
  fi
else
  OLD="$GRIDCASE_STREAM" OLD_BUCKET="$GRIDCASE_DISPATCHER_SNAPSHOT_BUCKET"
  NEW="${TO_STREAM:-${OLD}_SEALED}" NEW_BUCKET="${TO_BUCKET:-${OLD_BUCKET}-sealed}"
  if [ "$NEW" = "$OLD" ] || [ "$NEW_BUCKET" = "$OLD_BUCKET" ]; then
    say "the new stream and snapshot bucket must differ from the ones in use ($OLD, $OLD_BUCKET)"
    exit 2
  fi
fi

# Record where the reseal stands (values quoted for the shell that reads them).
record() {
  local file="$RUN/stream.env"
  {
    echo "# Written by deploy/reseal.sh ($(date -u +%FT%TZ)); read by deploy/local.sh."
    printf 'GRIDCASE_RESEAL_FROM=%q\n' "$OLD"
    printf 'GRIDCASE_RESEAL_FROM_SNAPSHOTS=%q\n' "$OLD_BUCKET"
    printf 'GRIDCASE_RESEAL_TO=%q\n' "$NEW"
    printf 'GRIDCASE_RESEAL_TO_SNAPSHOTS=%q\n' "$NEW_BUCKET"
    printf 'GRIDCASE_RESEAL_PHASE=%q\n' "$1"
  } >"$file.tmp"
  mv "$file.tmp" "$file"
  PHASE="$1"
}

start_nats
if [ -z "$PHASE" ] || [ "$PHASE" = copying ]; then
  record copying
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
