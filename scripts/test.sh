#!/usr/bin/env bash
# Runs the whole test suite: installs the real peers (Redis, a MongoDB-wire
# server, an S3 server, the Node socket.io server) if missing, then every
# test of every crate of the workspace, then (as root, as CI runs) the
# tests marked `#[ignore = "needs root"]`.
set -euo pipefail
cd "$(dirname "$0")/.."
.ci/install-services
cargo test --workspace --locked --no-fail-fast "$@"
# Root-only tests (#[ignore = "needs root"]): CI runs as root and runs them
# here; they fail, not pass, when run as another user.
if [ "$(id -u)" -eq 0 ]; then
  cargo test --locked -p voltd-actors --test it -- --ignored
else
  echo "test.sh: not root, root-only tests (cargo test -- --ignored) not run"
fi
