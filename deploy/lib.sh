# Shell helpers shared by deploy/local.sh and deploy/cluster.sh (sourced, not
# run). The caller sets RUN (state directory: pid files, logs/) and SAY
# (the prefix of its messages).

say() { printf '%s: %s\n' "${SAY:-gridcase}" "$*" >&2; }

# A master key file line (`<id> <64 hex digits>`) with a fresh random key,
# as `gridctl master-key new` prints (no build needed). The id says when.
new_master_key() {
  printf 'k%s %s\n' "$(date -u +%Y%m%d%H%M%S)" "$(head -c 32 /dev/urandom | od -An -tx1 -v | tr -d ' \n')"
}

# Whether the process of pid file $RUN/NAME.pid is alive.
alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

# SIGTERM NAME and wait (15 s at most, beyond the services' 10 s grace)
# for it to exit; still running then, SIGKILL it.
stop() {
  if alive "$1"; then
    # A paused process (SIGSTOP) takes SIGTERM only once it runs again.
    kill -CONT "$(cat "$RUN/$1.pid")" 2>/dev/null || true
    kill -TERM "$(cat "$RUN/$1.pid")"
    for _ in $(seq 1 150); do alive "$1" || break; sleep 0.1; done
    if alive "$1"; then
      say "$1 did not stop within 15 s: killing it"
      kill -KILL "$(cat "$RUN/$1.pid")" 2>/dev/null || true
      sleep 0.2
    fi
  fi
  rm -f "$RUN/$1.pid"
}

# Wait until NAME listens on HOST:PORT (30 s at most; fails early if it died).
wait_for_port() {
  local host="${2%:*}" port="${2##*:}"
  for _ in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
    if ! alive "$1"; then say "$1 exited; see $RUN/logs/$1.log"; tail -n 20 "$RUN/logs/$1.log" >&2; exit 1; fi
    sleep 0.2
  done
  say "$1 did not open $2 within 30s; see $RUN/logs/$1.log"; exit 1
}

# Start NAME as COMMAND... in the background, in a session of its own,
# logging to $RUN/logs/NAME.log; its pid goes to $RUN/NAME.pid.
start() {
  local name="$1"; shift
  mkdir -p "$RUN/logs"
  setsid nohup "$@" >>"$RUN/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}
