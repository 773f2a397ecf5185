#!/usr/bin/env bash
# Builds (release) and runs one of the binaries: initialize, producer, predictor, retrainer,
# registry, dashboard, demo, loadtest.
# Usage: scripts/run.sh BINARY [FLAGS...]     e.g. scripts/run.sh initialize --max-evals 50
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: scripts/run.sh BINARY [FLAGS...]" >&2; exit 2; }
source scripts/env.sh
bin="$1"
shift
cargo build --release --bin "$bin"
exec "$CARGO_TARGET_DIR/release/$bin" "$@"
