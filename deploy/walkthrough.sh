#!/usr/bin/env bash
# The README's walkthrough, runnable as it stands once deploy/up.sh has
# brought gridcase up: a leaking roof from filing to reopening, as a grid
# worker, a handling unit, the township command centre and the county see it.
# Every line below the marker is the README's, word for word (a test keeps
# them equal). Refusals the walkthrough shows on purpose end in `|| true`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# --- walkthrough ---
gridctl() { target/release/gridctl "$@"; }
token() { gridctl token --subject "$1" --role "$2" --org "$3" --territory "$4"; }
worker="--token $(token gw-0042 grid_worker cc-990101001 990101001001001)"
unit="--token $(token wy-07 handling_unit unit.property.990101001 unit.property.990101001)"
county="--token $(token audit-1 county_auditor co-990101 990101)"
export GRIDCTL_TOKEN=$(token cc-op-1 command_centre cc-990101001 990101001)   # the centre, by default
gridctl whoami                           # cc-op-1 (command_centre) of cc-990101001, territory 990101001

# Two photos (any JPEG will do; these are the smallest a JPEG header allows)
photos=$(mktemp -d)
printf '\xff\xd8\xff\xe0\x00\x10JFIF\x00roof' >$photos/roof.jpg
printf '\xff\xd8\xff\xe0\x00\x10JFIF\x00after' >$photos/after.jpg

# A grid worker files a leaking roof with a photo
CASE=$(gridctl $worker file --grid 990101001001001 --category 0204 --description "3号楼顶层漏水" \
    --latitude 30.2741 --longitude 120.1551 --address "东门社区3号楼" --contact-phone 13812345678 \
    --photo $photos/roof.jpg | awk '{print $3}')
echo "filed case $CASE"
# The dispatcher registers it and dispatches it by policy within a second
for _ in $(seq 1 50); do gridctl show $CASE | grep -q DISPATCHED && break; sleep 0.2; done
gridctl show $CASE                       # DISPATCHED to unit.property.990101001, deadlines (+08:00),
                                         # resident 13812345678 (the centre calls back)
gridctl $county show $CASE               # … resident 138****5678 (masked): the county audits
gridctl $worker file --grid 990101101001001 --category 0201 --description x --latitude 30.2 --longitude 120.1 \
    || true                              # refused: PermissionDenied grid 990101101001001 is outside your territory
gridctl $unit acknowledge $CASE
gridctl $unit request-extension $CASE --days 2 --reason "等待防水材料"
gridctl decide-extension $CASE --approve 2
gridctl $unit resolve $CASE --summary "已做防水" --photo $photos/after.jpg
gridctl verify $CASE --rework --reason "顶层仍渗水"
gridctl $unit resolve $CASE --summary "重新做防水"
gridctl verify $CASE --pass
gridctl feedback $CASE --feedback unsatisfied
gridctl reopen $CASE --reason "居民反映雨天仍漏"   # 问题不解决绝不消号
gridctl history $CASE                    # who did what, when and why; hash chain verified
gridctl overdue --region 990101001       # open cases past a deadline now, by township and unit
today=$(TZ=Asia/Shanghai date +%F)
gridctl ledger --kind township --from $today --to $today   # filed, due, closed, on-time rate, …
gridctl reopen $CASE --reason x || true  # refused: FailedPrecondition … TRANSITION_NOT_ALLOWED
gridctl $county cancel $CASE --reason x || true   # refused: PermissionDenied a county_auditor may not Cancel
