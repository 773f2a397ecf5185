#!/usr/bin/env bash
# Formatting and clippy on every target, warnings as errors (CI runs this).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo fmt --all -- --check
cargo clippy --release --all-targets -- -D warnings
# The fault suite is not a default test target (test = false): lint it by name.
cargo clippy --release --test faults -- -D warnings
