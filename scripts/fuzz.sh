#!/usr/bin/env bash
# Fuzzes the wire decoders and the dispatcher (cargo-fuzz, nightly) for a
# fixed number of executions per target, and reports crashes.
#
#   ./scripts/fuzz.sh                  # 3 M runs of each wire target, 1 M of dispatch
#   RUNS=100000 ./scripts/fuzz.sh      # every target RUNS times
#   ./scripts/fuzz.sh envelope         # one target
#
# Targets (fuzz/fuzz_targets/, bodies in fuzz/targets/): engineio, socketio
# (+ binary reassembly), envelope (VOLT messages) and dispatch (arbitrary
# message sequences through the real dispatcher and command families).
# Each starts from the committed corpus (fuzz/corpus/<target>, replayed in
# CI by actors/tests/it/fuzz_corpus.rs) plus what earlier runs found
# (fuzz/corpus-work, not committed). A crash is saved in
# fuzz/artifacts/<target>/; add it to fuzz/corpus/<target>/ with the fix.
# `./scripts/fuzz.sh --minimize` merges the work corpus into a minimal set
# in fuzz/corpus/ (what the repository keeps).
#
# No sanitizer (`-s none`): the code under test is safe Rust, so what the
# fuzzers look for is panics, hangs (-timeout) and allocations out of
# proportion to the input (-rss_limit_mb, -malloc_limit_mb); this also
# keeps the build and the runs several times faster.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "[fuzz] installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install -q "cargo-fuzz@$CARGO_FUZZ_VERSION" --locked
fi
# Share the repository's target directory (no second copy of the deps).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(cd .. && pwd)/target}"

minimize=0
targets=()
for a in "$@"; do
  case "$a" in
    --minimize) minimize=1 ;;
    *) targets+=("$a") ;;
  esac
done
[ ${#targets[@]} -eq 0 ] && targets=(engineio socketio envelope dispatch)

if [ "$minimize" = 1 ]; then
  for t in "${targets[@]}"; do
    mkdir -p "corpus-work/$t"
    tmp=$(mktemp -d)
    cargo +nightly fuzz cmin -s none "$t" "corpus-work/$t" -- -merge_control_file="$tmp/ctl" >/dev/null 2>&1 || true
    rm -f "corpus/$t"/*
    cargo +nightly fuzz run -s none "$t" "corpus/$t" "corpus-work/$t" -- -merge=1 >/dev/null 2>&1
    rm -rf "$tmp"
    echo "[fuzz] $t: $(ls "corpus/$t" | wc -l) inputs kept in fuzz/corpus/$t"
  done
  exit 0
fi

total=0
crashed=0
for t in "${targets[@]}"; do
  case "$t" in
    dispatch) runs=${RUNS:-1000000}; max_len=4096 ;;
    *) runs=${RUNS:-3000000}; max_len=65536 ;;
  esac
  mkdir -p "corpus-work/$t" "artifacts/$t"
  cp -n "corpus/$t"/* "corpus-work/$t"/ 2>/dev/null || true
  log=$(mktemp)
  started=$SECONDS
  status=0
  cargo +nightly fuzz run -s none "$t" "corpus-work/$t" -- \
    -runs="$runs" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  execs=${execs:-0}
  total=$((total + execs))
  if [ "$status" -ne 0 ]; then
    crashed=$((crashed + 1))
    echo "[fuzz] $t: FAILED after $execs executions ($((SECONDS - started)) s):"
    grep -E "panicked|ERROR|SUMMARY|Test unit written" "$log" | head -20
  else
    echo "[fuzz] $t: $execs executions, no crash ($((SECONDS - started)) s, corpus $(ls "corpus-work/$t" | wc -l))"
  fi
  rm -f "$log"
done
echo "[fuzz] total: $total executions, $crashed target(s) crashed"
[ "$crashed" -eq 0 ]
