#!/usr/bin/env bash
# Runs the whole test suite: installs the real peers (Redis, a MongoDB-wire
# server, an S3 server, the Node socket.io server) if missing, then every
# test of every crate of the workspace, then (as root, as CI runs) the
# tests marked `#[ignore = "needs root"]`.
set -euo pipefail
cd "$(dirname "$0")/.."
.ci/install-services
cargo test --workspace --locked --no-fail-fast "$@"
if [ "$(id -u)" = 0 ]; then
  # Root-only tests: `#[ignore = "needs root"]`, named `root_…`; they
  # fail, not skip, when not root.
  cargo test -p voltd-actors --test it --locked -- --ignored root_
fi
