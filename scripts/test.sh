#!/usr/bin/env bash
# Runs the whole test suite (release build: training in debug mode is too slow to test).
# Installs the build prerequisites it can, see scripts/env.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release --bins
cargo test --release "$@"
