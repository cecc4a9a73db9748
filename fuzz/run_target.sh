#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time on a scratch copy of its seed corpus (the source
# tree is never written). Fails on any crash, leak, sanitizer report, timeout or OOM; the input
# that caused it is kept in ARTIFACT_DIR to reproduce with `TARGET INPUT`.
#   run_target.sh TARGET CORPUS_DIR ARTIFACT_DIR SECONDS     (NT_FUZZ_SECONDS overrides SECONDS)
set -euo pipefail

target="$1" corpus="$2" artifacts="$3" seconds="${NT_FUZZ_SECONDS:-$4}"
[[ -x "$target" ]] || { echo "no fuzz target $target" >&2; exit 2; }
[[ -d "$corpus" ]] || { echo "no seed corpus $corpus" >&2; exit 2; }

work="$(mktemp -d "${TMPDIR:-/tmp}/navietakie-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cp -r "$corpus" "$work/corpus"
mkdir -p "$artifacts"

# -timeout: one input taking seconds is a hang; -rss_limit_mb / -malloc_limit_mb: an input that
# makes the code allocate hundreds of MB is a finding, not a reason for the machine to swap.
# -jobs is not used: ctest -j runs the targets side by side.
"$target" \
  -max_total_time="$seconds" \
  -timeout=10 \
  -rss_limit_mb=1024 \
  -malloc_limit_mb=256 \
  -print_final_stats=1 \
  -artifact_prefix="$artifacts/" \
  "$work/corpus"
