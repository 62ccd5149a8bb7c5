#!/usr/bin/env bash
# The chaos suite's long run: the README's figures. Runs every scenario of
# testkit::chaos with the full counts (benches/chaos.rs) against the release
# voltd; the network scenarios (partition, throttle) need root.
#
#   sudo ./scripts/chaos.sh                     # everything (~15 min)
#   sudo ./scripts/chaos.sh voltd --seed 42     # one scenario, fixed kill points
#
# Scenarios: services (50 kill -9 of each managed server while Redis is
# written), voltd (25 kills during enrollment of fresh clusters + 100 of a
# running daemon), plane (20 restarts from the data file), partition (60 s
# link down in a network namespace), throttle (a 20 MB download over
# 1 Mbit/s + 200 ms each way). CI runs the same code with small counts
# (tests/it/chaos.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
.ci/install-services >/dev/null
started=$SECONDS
cargo bench --bench chaos -- "$@"
echo "[chaos] $((SECONDS - started)) s on $(nproc) cores, $(date -u +%Y-%m-%d)"
