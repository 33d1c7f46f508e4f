#!/usr/bin/env bash
# Stops what deploy/up.sh started (services first, NATS last). Keeps the
# run directory (.run/, or GRIDCASE_RUN_DIR: the NATS store, logs, keys);
# delete it to start from an empty event log.
set -euo pipefail
RUN="$(realpath -m "${GRIDCASE_RUN_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.run}")"
for name in open311 web dispatcher projection intake nats; do
  pid_file="$RUN/$name.pid"
  if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    kill -TERM "$(cat "$pid_file")"
    for _ in $(seq 1 100); do kill -0 "$(cat "$pid_file")" 2>/dev/null || break; sleep 0.1; done
    echo "stopped $name"
  fi
  rm -f "$pid_file"
done
