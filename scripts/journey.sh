#!/usr/bin/env bash
# The local journey, end to end: installs the service stand-ins if missing,
# builds voltd, then starts a volt-plane, creates a cluster, enrolls, runs the
# daemon (with its managed services) and drives it, printing every step.
# Extra arguments go to volt-journey (e.g. --duration 0 to run until Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
.ci/install-services
cargo build --locked --bins
exec target/debug/volt-journey "$@"
