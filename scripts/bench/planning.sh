#!/usr/bin/env bash
# validate's cost at scale (parse, validation, planning; no process is created): flat trees and
# deep chains of 10^4, 10^5 and 10^6 processes, wall time and peak RSS from GNU time, against
# a floor measured in the same run: Python's C JSON parser reading the same file.
#
#   scripts/bench/planning.sh BINARY [SIZES]      (default SIZES: "10000 100000 1000000")
#
# Prints one line per case: shape n wall_s rss_kb floor_s floor_rss_kb bytes cpu_s
# (cpu_s: validate's user + system time, which a loaded machine disturbs less than wall time)
set -euo pipefail
binary="$1"
sizes="${2:-10000 100000 1000000}"
work=$(mktemp -d /tmp/rr-planning.XXXXXX)
trap 'rm -rf "$work"' EXIT
gnu_time=/usr/bin/time
[[ -x $gnu_time ]] || { echo "planning.sh: GNU time (/usr/bin/time, Debian package time) is missing" >&2; exit 1; }

for shape in flat chain; do
    for n in $sizes; do
        f="$work/$shape-$n.json"
        python3 - "$shape" "$n" "$f" <<'PY'
import sys
shape, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(path, "w") as out:
    out.write('{"version": 1, "processes": [\n')
    for i in range(n):
        pid = 100 + i
        ppid = 0 if i == 0 else (100 if shape == "flat" else pid - 1)
        out.write('  {"pid": %d, "ppid": %d, "pgid": 100, "sid": 100}%s\n' % (pid, ppid, "," if i < n - 1 else ""))
    out.write(']}\n')
PY
        bytes=$(stat -c %s "$f")
        read -r wall rss user sys < <("$gnu_time" -f "%e %M %U %S" "$binary" validate -q "$f" 2>&1 >/dev/null | tail -1) || true
        read -r fwall frss < <("$gnu_time" -f "%e %M" python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$f" 2>&1 >/dev/null | tail -1) || true
        cpu=$(awk -v u="${user:-0}" -v s="${sys:-0}" 'BEGIN{printf "%.2f", u + s}')
        echo "$shape $n ${wall:-?} ${rss:-?} ${fwall:-?} ${frss:-?} $bytes $cpu"
        rm -f "$f"
    done
done
