#!/usr/bin/env bash
# Runs the whole test suite: installs the real peers (Redis, a MongoDB-wire
# server, an S3 server, the Node socket.io server) if missing, then every
# test of every crate of the workspace, then — when run as root, as CI is —
# the root-only tests, and prints the wall time of it all.
#
# Root-only tests are `#[ignore = "needs root"]` and live in a `needs_root`
# module of their topic (e.g. `terminal::needs_root::…` in tests/it). Not
# root: they are listed in a notice and the run still succeeds.
#
# Extra arguments go to `cargo test`: cargo's before `--`, the test
# binaries' after it (filters, --nocapture, …; give options a value with
# `=`, e.g. --test-threads=1). The root pass keeps the cargo arguments, runs
# only the root-only tests the filters select, and forwards the options.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
wall_time() {
  local s=$((SECONDS - started))
  printf '[test.sh] whole suite: %dm%02ds wall time (peers check, build, every test)\n' $((s / 60)) $((s % 60))
}
trap wall_time EXIT

cargo_args=()
test_args=()
seen_separator=0
for a in "$@"; do
  if [ "$seen_separator" = 0 ] && [ "$a" = "--" ]; then
    seen_separator=1
  elif [ "$seen_separator" = 0 ]; then
    cargo_args+=("$a")
  else
    test_args+=("$a")
  fi
done
# The test binaries' filters, and their options minus the selection ones
# the root pass sets itself.
test_filters=()
test_opts=()
for a in "${test_args[@]}"; do
  case "$a" in
    --ignored | --include-ignored | --exact | --list) ;;
    -*) test_opts+=("$a") ;;
    *) test_filters+=("$a") ;;
  esac
done

.ci/install-services

status=0
cargo test --workspace --locked --no-fail-fast "${cargo_args[@]}" -- "${test_args[@]}" || status=$?

# The root-only tests the filters select: the ignored tests of the `it`
# binaries whose path has a `needs_root` module.
root_tests=()
if listing=$(cargo test --workspace --locked -q "${cargo_args[@]}" --test it -- \
  --list --ignored "${test_opts[@]}" "${test_filters[@]}"); then
  mapfile -t root_tests < <(printf '%s\n' "$listing" | sed -n 's/: test$//p' | grep -E '(^|::)needs_root::' || true)
else
  echo "[test.sh] could not list the root-only tests" >&2
  status=1
fi

if [ "${#root_tests[@]}" -eq 0 ]; then
  echo "[test.sh] no root-only tests selected"
elif [ "$(id -u)" -eq 0 ]; then
  echo "[test.sh] running the ${#root_tests[@]} root-only test(s) as root"
  cargo test --workspace --locked --no-fail-fast "${cargo_args[@]}" --test it -- \
    --ignored --exact "${test_opts[@]}" "${root_tests[@]}" || status=$?
else
  bar='!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!'
  echo "$bar"
  echo "!! NOT ROOT: these ${#root_tests[@]} root-only test(s) did NOT run:"
  printf '!!   %s\n' "${root_tests[@]}"
  echo "!! CI runs as root and runs them; locally: sudo ./scripts/test.sh"
  echo "$bar"
fi
exit "$status"
