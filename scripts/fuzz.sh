#!/usr/bin/env bash
# Fuzzes the tree parser, validator, planner and CRIU import with libFuzzer (Sources/TreeFuzzer),
# starting from the committed corpus Fuzz/corpus. New inputs go to a scratch corpus under
# .build-fuzz, never into the repository; a crash leaves its input in .build-fuzz/crashes.
#
#   scripts/fuzz.sh                 60 s
#   scripts/fuzz.sh SECONDS         another bound (scripts/test.sh runs 30)
#
# Prints the number of executions libFuzzer made.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:$PATH"
seconds="${1:-60}"
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] || { echo "fuzz.sh: SECONDS must be a positive integer" >&2; exit 64; }

scratch=.build-fuzz
swift build --scratch-path "$scratch" --product tree-fuzzer -Xswiftc -sanitize=fuzzer -Xswiftc -DFUZZING >/dev/null
fuzzer="$(swift build --scratch-path "$scratch" --show-bin-path)/tree-fuzzer"
mkdir -p "$scratch/corpus" "$scratch/crashes"
log="$scratch/fuzz.log"
# -rss_limit_mb / -timeout: a tree that makes the planner eat memory or time is a bug too.
status=0
"$fuzzer" "$scratch/corpus" Fuzz/corpus -max_total_time="$seconds" -max_len=8192 -timeout=10 \
    -rss_limit_mb=1024 -artifact_prefix="$scratch/crashes/" -print_final_stats=1 >"$log" 2>&1 || status=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
echo "fuzz: ${runs:-?} executions in ${seconds} s (corpus: $(ls Fuzz/corpus | wc -l) committed, $(ls "$scratch/corpus" | wc -l) found)"
if ((status != 0)); then
    echo "fuzz: FAILED (libFuzzer status $status); the input is in $scratch/crashes:" >&2
    tail -40 "$log" >&2
fi
exit "$status"
