#!/usr/bin/env bash
# validate's cost at scale (parse, validation, planning; no process is created): flat trees,
# deep chains and the shapes that once made planning quadratic (scripts/bench/trees.py: dead
# session leaders, subreapers, double-forked daemons, setsid at every level, group leaders that
# moved, one seccomp profile per process, threads), of 10^4, 10^5 and 10^6 processes; wall
# time, CPU time and peak RSS from GNU time, against a floor measured in the same run: Python's
# C JSON parser reading the same file.
#
#   scripts/bench/planning.sh BINARY [SIZES] [SHAPES]   (default SIZES: "10000 100000 1000000";
#                                                        SHAPES: all of trees.py's)
#
# Prints one line per case: shape n wall_s rss_kb floor_s floor_rss_kb bytes cpu_s
# (cpu_s: validate's user + system time, which a loaded machine disturbs less than wall time).
# A case that fails, or takes longer than RR_PLANNING_TIMEOUT seconds (default 300), prints "?"
# for its figures and why on stderr.
set -euo pipefail
binary="$1"
sizes="${2:-10000 100000 1000000}"
shapes="${3:-flat chain dead-sessions subreaper-sessions daemons setsid-chain group-moves group-cycles cross-groups seccomp threads}"
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/rr-planning.XXXXXX)
trap 'rm -rf "$work"' EXIT
gnu_time=/usr/bin/time
[[ -x $gnu_time ]] || { echo "planning.sh: GNU time (/usr/bin/time, Debian package time) is missing" >&2; exit 1; }

for shape in $shapes; do
    for n in $sizes; do
        f="$work/$shape-$n.json"
        python3 "$here/trees.py" "$shape" "$n" "$f"
        bytes=$(stat -c %s "$f")
        if ((bytes > 64 * 1024 * 1024)); then
            echo "planning.sh: $shape N=$n is $bytes bytes, over the tree file limit (64 MiB): skipped" >&2
            rm -f "$f"
            continue
        fi
        wall=? rss=? user=0 sys=0
        if "$gnu_time" -o "$work/time" -f "%e %M %U %S" timeout "${RR_PLANNING_TIMEOUT:-300}" "$binary" validate -q "$f" >/dev/null 2>"$work/err"; then
            read -r wall rss user sys < "$work/time"
        else
            echo "planning.sh: validate of $shape N=$n failed or timed out (${RR_PLANNING_TIMEOUT:-300} s): $(head -c 300 "$work/err")" >&2
        fi
        read -r fwall frss < <("$gnu_time" -f "%e %M" python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$f" 2>&1 >/dev/null | tail -1) || true
        cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", u + s}')
        echo "$shape $n $wall $rss ${fwall:-?} ${frss:-?} $bytes $cpu"
        rm -f "$f"
    done
done
