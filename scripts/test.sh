#!/usr/bin/env bash
# Runs the whole test suite: installs the real peers (Redis, a MongoDB-wire
# server, an S3 server, the Node socket.io server) if missing, then every
# test of every crate of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
.ci/install-services
cargo test --workspace --locked --no-fail-fast "$@"
