#!/usr/bin/env bash
# The whole test suite: installs what the tests need (deploy/install-deps.sh,
# with --browser: Debian's Chromium and chromedriver for the console's tests;
# with --chaos: iproute2 and nftables for the chaos test's network faults),
# then runs every test of the workspace. Tests start their own nats-server
# (own port, own store directory) and never use one left running.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

deploy/install-deps.sh --browser --chaos
export GRIDCASE_NATS_SERVER="$ROOT/.tools/nats/bin/nats-server"
echo "testing against $("$GRIDCASE_NATS_SERVER" --version)"

# The rules of the code, as CI enforces them: formatted, and no clippy
# warning (the workspace's lints table says what is allowed and why).
for component in rustfmt clippy; do
  cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1 || rustup component add "$component"
done
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

# The chaos test runs the service binaries themselves (deploy/cluster.sh).
cargo build --workspace --bins --quiet
# Its faults come at seeded points: a fixed seed, so that CI injects the
# same schedule on every run (GRIDCASE_CHAOS_SEED to try others).
export GRIDCASE_CHAOS_SEED="${GRIDCASE_CHAOS_SEED:-20261206}"
export GRIDCASE_BIN_DIR="$ROOT/target/debug"

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi

# A short fuzz run of every decoder of untrusted input (corpora in
# fuzz/corpus/, replayed first), unless tests were picked by name. A fixed
# seed, so that CI explores the same inputs on every run (GRIDCASE_FUZZ_SEED
# to explore others; a longer run with a random seed is how new inputs are
# found: gridcase-fuzz --seconds 300).
if [ "$#" -eq 0 ]; then
  "$ROOT/target/debug/gridcase-fuzz" --seconds "${GRIDCASE_FUZZ_SECONDS:-12}" --seed "${GRIDCASE_FUZZ_SEED:-20261202}"
fi
