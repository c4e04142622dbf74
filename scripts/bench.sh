#!/usr/bin/env bash
# Benchmarks of rootless-restore against the fork floor, measured side by side in one run.
# Prints a table on stdout and writes bench-out/bench-<time>.csv (+ bench-out/latest.csv and the
# table as bench-out/latest.txt). See docs/performance.md for the method and the latest figures.
#
#   scripts/bench.sh                 flat trees of 100, 1 000, 10 000; deep chains of 100, 1 000;
#                                    clone3 against the ns_last_pid dance; wrong PIDs under
#                                    concurrent forking; the fork supervisor's cost per fork
#                                    validate (parse, check, plan) of 10^4, 10^5, 10^6 processes,
#                                    flat, chains and the unusual shapes of scripts/bench/trees.py
#   scripts/bench.sh --quick         trees of 100 and 1 000 only, fewer repetitions
#   scripts/bench.sh --targets       only issue 13's table: each case against its floor, same run
#                                    (with --quick: chains up to 1 000, fewer repetitions)
#
# Options:
#   --binary PATH        the rootless-restore to measure (default: the release build of
#                        `scripts/setup.sh --build-only --scratch-path .build-bench`)
#   --user NAME          as root, run everything as this unprivileged user (default: $RR_BENCH_USER,
#                        else rrbench). Its processes are killed at the end (pkill -KILL -u), so it
#                        must not be a user other work (e.g. the test suite's rrtest) is running as.
#   --flat-sizes "N..."  --deep-sizes "N..."   override the tree sizes
#   --reps N             repetitions of each tree below 10 000 processes (default 3; medians shown)
#   --race-runs K        restores per method and noise level in the wrong-PID row (default 20;
#                        5 with --quick)
#   --timeout S          give up on one restore after S seconds (default 150); the row then shows
#                        the rate measured until then, marked "partial"
#   --no-nice            do not raise the benchmark's priority (as root it runs at nice -10 so
#                        that other users' builds disturb the figures less)
#   --force              start even if the user already has processes (they are killed at the end)
set -euo pipefail
# Character-aware padding of the table needs a UTF-8 locale.
if locale -a 2>/dev/null | grep -qix 'c.utf-\?8'; then export LC_ALL=C.UTF-8; fi

usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

quick=0
targets_only=0
binary=""
bench_user="${RR_BENCH_USER:-rrbench}"
flat_sizes="100 1000 10000"
deep_sizes="100 1000"
reps=3
race_runs=""
race_n=300
supervisor_forks=2000
timeout_s=150
use_nice=1
force=0
sizes_given=0
while (($#)); do
    case "$1" in
        --quick) quick=1; shift ;;
        --targets) targets_only=1; shift ;;
        --binary) binary="$2"; shift 2 ;;
        --user) bench_user="$2"; shift 2 ;;
        --flat-sizes) flat_sizes="$2"; sizes_given=1; shift 2 ;;
        --deep-sizes) deep_sizes="$2"; sizes_given=1; shift 2 ;;
        --reps) reps="$2"; shift 2 ;;
        --race-runs) race_runs="$2"; shift 2 ;;
        --timeout) timeout_s="$2"; shift 2 ;;
        --no-nice) use_nice=0; shift ;;
        --force) force=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bench.sh: unknown argument: $1 (try --help)" >&2; exit 64 ;;
    esac
done
if ((quick)) && ((!sizes_given)); then flat_sizes="100 1000"; deep_sizes="100 1000"; fi
if [[ -z "$race_runs" ]]; then race_runs=20; if ((quick)); then race_runs=5; fi; fi

say() { printf '[bench] %s\n' "$*" >&2; }
command -v python3 >/dev/null || { echo "bench.sh: python3 is needed (trees, JSON, statistics)" >&2; exit 1; }
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:$PATH"

# --- who runs the runtime ------------------------------------------------------------------
prefix=()
if [[ $(id -u) -eq 0 ]]; then
    id "$bench_user" >/dev/null 2>&1 || {
        echo "bench.sh: user $bench_user does not exist: create a throwaway user for it" \
             "(useradd --system --no-create-home --shell /usr/sbin/nologin $bench_user) or pass --user" >&2
        exit 1
    }
    [[ $(id -u "$bench_user") -ne 0 ]] || { echo "bench.sh: --user must not be root" >&2; exit 1; }
    prefix=(setpriv "--reuid=$bench_user" "--regid=$bench_user" --clear-groups --inh-caps=-all --)
    if ((use_nice)); then prefix=(nice -n -10 "${prefix[@]}"); fi
    runner="$bench_user (dropped from root with setpriv$( ((use_nice)) && echo ", nice -10"))"
    existing=$(pgrep -u "$bench_user" 2>/dev/null | wc -l || true)
    if ((existing > 0)) && ((!force)); then
        echo "bench.sh: $bench_user already has $existing processes (another test run?); they would" \
             "disturb the figures and be killed at the end. Use another --user, or --force." >&2
        exit 1
    fi
else
    bench_user=$(id -un)
    runner="$bench_user (not root: as self)"
fi

# --- the binary ---------------------------------------------------------------------------
if [[ -z "$binary" ]]; then
    # As setup.sh builds it for users (static-pie), in a scratch directory of its own.
    say "building the release binary (scripts/setup.sh --build-only --scratch-path .build-bench)"
    bash scripts/setup.sh --build-only --scratch-path .build-bench >&2
    binary="$repo/.build-bench/release/rootless-restore"
fi
[[ -x "$binary" ]] || { echo "bench.sh: $binary is not an executable" >&2; exit 1; }

work=$(mktemp -d /tmp/rr-bench.XXXXXX)
chmod 0755 "$work"
sampler=""
cleanup() {
    if [[ -n "$sampler" ]]; then kill "$sampler" 2>/dev/null || true; fi
    if [[ $(id -u) -eq 0 ]]; then pkill -KILL -u "$bench_user" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
cp "$binary" "$work/rootless-restore"
chmod 0755 "$work/rootless-restore"

# --- the floor ----------------------------------------------------------------------------
cc_bin=""
for c in cc gcc clang /opt/swift/usr/bin/clang; do
    if command -v "$c" >/dev/null 2>&1; then cc_bin=$c; break; fi
done
[[ -n "$cc_bin" ]] || { echo "bench.sh: no C compiler (cc, gcc or clang) for scripts/bench/fork_floor.c" >&2; exit 1; }
"$cc_bin" -O2 -o "$work/fork_floor" scripts/bench/fork_floor.c
chmod 0755 "$work/fork_floor"
[[ $(id -u) -eq 0 ]] && chown "$bench_user" "$work"

# --- trees ----------------------------------------------------------------------------------
python3 - "$work" "$flat_sizes $race_n" "$deep_sizes" "$supervisor_forks" <<'EOF'
import json, sys
work, flat, deep, forks = sys.argv[1], sorted(set(sys.argv[2].split()), key=int), sys.argv[3].split(), sys.argv[4]
def write(name, procs, comment):
    with open(f"{work}/{name}.json", "w") as f:
        json.dump({"version": 1, "comment": comment, "processes": procs}, f)
for n in map(int, flat):
    procs = [{"pid": 100, "ppid": 0, "pgid": 100, "sid": 100}]
    procs += [{"pid": 100 + i, "ppid": 100, "pgid": 100, "sid": 100} for i in range(1, n)]
    write(f"flat-{n}", procs, f"a session leader with {n - 1} holding children")
for n in map(int, deep):
    procs = [{"pid": 100 + i, "ppid": 99 + i if i else 0, "pgid": 100, "sid": 100} for i in range(n)]
    write(f"deep-{n}", procs, f"a chain of {n} holding processes")
write("one", [{"pid": 100, "ppid": 0, "pgid": 100, "sid": 100,
               "process": {"args": ["/bin/true"], "env": ["PATH=/usr/bin:/bin"], "cwd": "/"}}],
      "one process that exits at once")
# The fork supervisor's cost: one process whose payload forks (fork + _exit + reap) `forks`
# times and prints its cost per fork; unsupervised, and with one payload-spawned child, which
# turns the seccomp-notify fork supervisor on: every fork gets PID 5000 (each child is reaped
# before it shows what it became, which gives the PID back for the next fork).
payload = {"pid": 100, "ppid": 0, "pgid": 100, "sid": 100,
           "process": {"args": [f"{work}/fork_floor", "exit", forks], "env": ["PATH=/usr/bin:/bin"], "cwd": "/"}}
write("forks-plain", [payload], f"one process whose payload forks {forks} times")
write("forks-supervised", [payload, {"pid": 5000, "ppid": 100, "pgid": 100, "sid": 100, "spawn": "payload"}],
      f"the same, each fork pinned to PID 5000 by the fork supervisor (given back when reaped)")
EOF
chmod 0644 "$work"/*.json

# --- output -------------------------------------------------------------------------------
mkdir -p bench-out
stamp=$(date -u +%Y%m%dT%H%M%SZ)
csv="bench-out/bench-$stamp.csv"
echo "row,shape,n,rep,metric,value,unit" > "$csv"
emit() { echo "$1,$2,$3,$4,$5,$6,$7" >> "$csv"; }   # row shape n rep metric value unit
notes=()

meminfo() { awk -v k="$1" '$1 == k":" {print $2}' /proc/meminfo; }
field_kb() { awk -v k="$2" '$1 == k":" {print $2}' "$1" 2>/dev/null || true; }
now() { echo "$EPOCHREALTIME"; }
elapsed_ms() { python3 -c "print(f'{($2 - $1) * 1000:.1f}')" "$1" "$2" 2>/dev/null || awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", (b-a)*1000}'; }

# Processes of the bench user left after a teardown: waits up to 15 s for them to go.
leftovers() {
    local n=0 i
    for i in $(seq 150); do
        n=$(pgrep -u "$bench_user" 2>/dev/null | grep -vx "$$" | wc -l || true)
        ((n == 0)) && break
        sleep 0.1
    done
    echo "$n"
}

machine_info() {
    local model
    model=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
    echo "kernel $(uname -r), $(nproc) CPUs ($model), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM"
    echo "host pid_max $(cat /proc/sys/kernel/pid_max), load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
    if pgrep -x 'kdamond.0' >/dev/null 2>&1 || pgrep kdamond >/dev/null 2>&1; then
        echo "DAMON (kdamond) is running on this machine"
    fi
    echo "runtime: $("$work/rootless-restore" --version 2>/dev/null | head -1), $(file -b "$binary" 2>/dev/null | cut -d, -f1-2 || echo binary)"
    echo "as: $runner"
}

# ---------------------------------------------------------------------------------------------
# One restore: `run --report` as the bench user, timed by the report's phases; memory read just
# before the teardown; then SIGTERM to the runtime and a check that nothing is left.
# Sets: R_BUILD R_VERIFY R_NS R_TOTAL R_PER R_STATUS R_TEARDOWN R_HWM R_INIT_HWM R_DIRTY R_PARTIAL ...
# Optional: restore_once SHAPE N REP TAG [run options...] (TAG names the files, e.g. the method).
restore_once() {
    local shape=$1 n=$2 rep=$3 tag=${4:-auto}
    shift 3; (($#)) && shift
    local tree="$work/$shape-$n.json" report="$work/report-$shape-$n-$rep-$tag.json"
    local err="$work/stderr-$shape-$n-$rep-$tag"
    rm -f "$report"
    local avail0 stack0 pt0
    avail0=$(meminfo MemAvailable); stack0=$(meminfo KernelStack); pt0=$(meminfo PageTables)
    local t0; t0=$(now)
    ( cd "$work" && exec "${prefix[@]}" "$work/rootless-restore" run --quiet "$@" --report "$report" "$tree" ) \
        >"$work/stdout-$shape-$n-$rep-$tag" 2>"$err" &
    local pid=$! ready=0
    local deadline=$(( $(date +%s) + timeout_s ))
    while (( $(date +%s) < deadline )); do
        if [[ -s "$report" ]]; then ready=1; break; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    local t1; t1=$(now)
    R_PARTIAL=""
    R_HWM=0; R_INIT_HWM=0; R_DIRTY=0; R_DIRTY_SAMPLE=0; R_AVAIL=0; R_STACK=0; R_PT=0
    if ((ready)); then
        R_AVAIL=$(( avail0 - $(meminfo MemAvailable) ))
        R_STACK=$(( $(meminfo KernelStack) - stack0 ))
        R_PT=$(( $(meminfo PageTables) - pt0 ))
        # The runtime is $pid (nice and setpriv exec); its child is the namespace's init.
        local runtime=$pid
        R_HWM=$(field_kb "/proc/$runtime/status" VmHWM)
        local init; init=$(pgrep -P "$runtime" | head -1 || true)
        [[ -n "$init" ]] && R_INIT_HWM=$(field_kb "/proc/$init/status" VmHWM)
        # Private_Dirty of up to 50 processes spread over the tree (their host PIDs from the report).
        read -r R_DIRTY R_DIRTY_SAMPLE < <(python3 - "$report" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
procs = d["processes"]
step = max(1, len(procs) // 50)
total = count = 0
for p in procs[::step][:50]:
    try:
        for line in open(f"/proc/{p['hostPid']}/smaps_rollup"):
            if line.startswith("Private_Dirty:"):
                total += int(line.split()[1]); count += 1
    except OSError:
        pass
print(f"{total / count:.1f} {count}" if count else "0 0")
EOF
        )
        read -r R_BUILD R_VERIFY R_NS R_RELEASE R_REPORT < <(python3 - "$report" <<'EOF'
import json, sys
ph = json.load(open(sys.argv[1]))["phases"]
print(*(ph.get(k, 0) for k in ("build", "verify", "namespace", "release", "report")))
EOF
        )
    fi
    # Teardown: SIGTERM to the runtime, as a user would.
    local t2; t2=$(now)
    kill -TERM "$pid" 2>/dev/null || true
    local st=0
    wait "$pid" || st=$?
    local t3; t3=$(now)
    R_STATUS=$st
    R_TEARDOWN=$(elapsed_ms "$t2" "$t3")
    R_LEFT=$(leftovers)
    if ((R_LEFT > 0)); then
        notes+=("$shape $n rep $rep ($tag): $R_LEFT processes of $bench_user were left after the runtime exited; killed")
        pkill -KILL -u "$bench_user" 2>/dev/null || true
    fi
    if ((!ready)); then
        # Partial: how far did it get? "interrupted by signal 15 after K of N processes".
        local k
        k=$(grep -o 'after [0-9]* of [0-9]* processes' "$err" | awk '{print $2}' | tail -1 || true)
        [[ -z "$k" || "$k" == 0 ]] && { R_BUILD=""; R_PARTIAL="failed: $(tail -c 300 "$err" | tr '\n,' ' ;')"; return; }
        R_BUILD=$(elapsed_ms "$t0" "$t1")
        R_VERIFY=0; R_NS=0; R_RELEASE=0; R_REPORT=0
        R_PARTIAL="partial: $k of $n created in $timeout_s s"
        R_PER=$(awk -v b="$R_BUILD" -v k="$k" 'BEGIN{printf "%.1f", b*1000/k}')
        R_TOTAL=$R_BUILD
        return
    fi
    R_TOTAL=$(awk -v a="$R_BUILD" -v b="$R_VERIFY" -v c="$R_NS" 'BEGIN{printf "%.1f", a+b+c}')
    R_PER=$(awk -v b="$R_BUILD" -v n="$n" 'BEGIN{printf "%.1f", b*1000/n}')
}

# The floor: fork_floor MODE N as the bench user. Sets F_PER F_TOTAL F_TEARDOWN F_RSS F_DIRTY F_AVAIL F_STACK F_PT.
floor_once() {
    local mode=$1 n=$2 out
    out=$(cd "$work" && timeout --signal=KILL "$timeout_s" "${prefix[@]}" "$work/fork_floor" "$mode" "$n" 2>&1) || {
        F_PER=""; notes+=("floor $mode $n failed or timed out: $out"); pkill -KILL -u "$bench_user" 2>/dev/null || true; return; }
    read -r _ _ F_PER F_TOTAL F_TEARDOWN F_RSS F_DIRTY F_AVAIL F_STACK F_PT <<<"$out"
}

median() { python3 -c "import statistics,sys; v=[float(x) for x in sys.argv[1:] if x]; print(f'{statistics.median(v):.1f}' if v else '')" "$@"; }
p10() { python3 -c "import sys; v=sorted(float(x) for x in sys.argv[1:] if x); print(f'{v[len(v) // 10]:.1f}' if v else '')" "$@"; }

# --- rows on how PIDs are chosen ---------------------------------------------------------------
ratio_of() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a == "" || b == "" || b == 0) print ""; else printf "%.2f×", a/b}'; }

# clone3 set_tid against the ns_last_pid dance, both through the runtime (run --pid-method),
# flat trees, alternating the two methods in each repetition (which goes first alternates too).
row_clone3_vs_dance() {
    local n r rep m order c d
    for n in $flat_sizes; do
        # Two pairs at 10 000 (one restore there varies by ±15 %), so that each method goes first once.
        r=$reps; ((n >= 10000)) && r=2
        local cl=() da=() cl_tot=() da_tot=()
        for rep in $(seq "$r"); do
            order="clone3 dance"; ((rep % 2 == 0)) && order="dance clone3"
            for m in $order; do
                say "flat $n, repetition $rep of $r: run --pid-method $m"
                restore_once flat "$n" "$rep" "$m" --pid-method "$m"
                if [[ -z "$R_BUILD" || -n "$R_PARTIAL" ]]; then
                    notes+=("pid-method $m, flat $n rep $rep: ${R_PARTIAL:-failed}")
                    continue
                fi
                emit "restore_$m" flat "$n" "$rep" per_process_us "$R_PER" us
                emit "restore_$m" flat "$n" "$rep" build_ms "$R_BUILD" ms
                emit "restore_$m" flat "$n" "$rep" verify_ms "$R_VERIFY" ms
                emit "restore_$m" flat "$n" "$rep" restore_ms "$R_TOTAL" ms
                emit "restore_$m" flat "$n" "$rep" teardown_ms "$R_TEARDOWN" ms
                emit "restore_$m" flat "$n" "$rep" exit_status "$R_STATUS" code
                if [[ $m == clone3 ]]; then cl+=("$R_PER"); cl_tot+=("$R_TOTAL"); else da+=("$R_PER"); da_tot+=("$R_TOTAL"); fi
            done
        done
        c=$(median "${cl[@]}"); d=$(median "${da[@]}")
        if [[ -n "$c" && -n "$d" ]]; then emit ratio flat "$n" 0 dance_over_clone3 "$(ratio_of "$d" "$c" | tr -d '×')" x; fi
        table_row "flat N=$n, --pid-method dance (µs/process)" "${d:-?}" "${c:-?}" "$(ratio_of "$d" "$c")" \
            "floor column: --pid-method clone3, same run; restore $(median "${da_tot[@]}") vs $(median "${cl_tot[@]}") ms"
    done
}

# One restore of the race tree under noise; sets A_CLASS (clean|wrong|eexist|other) and A_FORKS
# (tree processes whose creation was attempted: I+1 when the error names `process #I`).
race_once() {
    local method=$1 nf=$2 k=$3
    local tree="$work/flat-$race_n.json" report="$work/race-$method-$nf-$k.json" err="$work/race-$method-$nf-$k.err"
    rm -f "$report"
    ( cd "$work" && exec "${prefix[@]}" "$work/rootless-restore" run --quiet --pid-method "$method" \
        --noise-forkers "$nf" --report "$report" "$tree" ) >/dev/null 2>"$err" &
    local pid=$! ready=0 deadline=$(( $(date +%s) + timeout_s ))
    while (( $(date +%s) < deadline )); do
        if [[ -s "$report" ]]; then ready=1; break; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.02
    done
    kill -TERM "$pid" 2>/dev/null || true
    local st=0
    wait "$pid" || st=$?
    local left; left=$(leftovers)
    if ((left > 0)); then
        notes+=("race $method noise $nf run $k: $left processes of $bench_user were left; killed")
        pkill -KILL -u "$bench_user" 2>/dev/null || true
    fi
    local i
    i=$(grep -o 'process #[0-9]*' "$err" | head -1 | tr -dc '0-9' || true)
    A_MSG=$(tr '\n,' ' ;' <"$err" | cut -c1-200)
    if ((ready)); then
        A_CLASS=clean; A_FORKS=$race_n
    elif grep -q 'was created with PID' "$err" && [[ -n "$i" ]]; then
        A_CLASS=wrong; A_FORKS=$((i + 1))
    elif grep -q 'EEXIST' "$err" && [[ -n "$i" ]]; then
        A_CLASS=eexist; A_FORKS=$((i + 1))
    else
        A_CLASS=other; A_FORKS=0; [[ -n "$i" ]] && A_FORKS=$((i + 1))
        notes+=("race $method noise $nf run $k: exit $st, neither clean nor a PID failure: $A_MSG")
    fi
    if [[ $A_CLASS == wrong ]]; then
        emit race_wrong_pid "$method" "$nf" "$k" "$(grep -o 'created with PID [0-9]* instead of [0-9]*' "$err" | head -1 | awk '{print $4 "_for_" $7}' || true)" 1 pid
    fi
    return 0
}

# Wrong PIDs under concurrent forking: --noise-forkers N processes fork (fork + exit + reap,
# no chosen PID) inside the namespace all through the restore; the race tree is restored
# race_runs times per method and N, alternating the methods.
row_wrong_pid_rate() {
    local nf k m rate
    for nf in 0 1 2; do
        local -A wrong=() eexist=() clean=() other=() forks=()
        for m in clone3 dance; do wrong[$m]=0; eexist[$m]=0; clean[$m]=0; other[$m]=0; forks[$m]=0; done
        say "wrong-PID row: flat $race_n, $nf noise forkers, $race_runs restores per method"
        for k in $(seq "$race_runs"); do
            for m in clone3 dance; do
                race_once "$m" "$nf" "$k"
                emit "race_$m" flat "$race_n" "$k" "noise${nf}_$A_CLASS" "$A_FORKS" forks
                case $A_CLASS in
                    clean) clean[$m]=$((clean[$m] + 1)) ;;
                    wrong) wrong[$m]=$((wrong[$m] + 1)) ;;
                    eexist) eexist[$m]=$((eexist[$m] + 1)) ;;
                    *) other[$m]=$((other[$m] + 1)) ;;
                esac
                forks[$m]=$((forks[$m] + A_FORKS))
            done
        done
        for m in clone3 dance; do
            rate=$(awk -v w="${wrong[$m]}" -v f="${forks[$m]}" 'BEGIN{ if (f == 0) print "?"; else printf "%.3g %%", 100*w/f}')
            emit race_summary "$m" "$nf" 0 wrong_per_fork_pct "$(awk -v w="${wrong[$m]}" -v f="${forks[$m]}" 'BEGIN{ if (f) printf "%.4f", 100*w/f}')" pct
            local extra=""; ((other[$m])) && extra=", ${other[$m]} other"
            table_row "wrong PIDs/fork, $m, $nf noise forker$( ((nf == 1)) || echo s)" "$rate" "" "" \
                "$race_runs runs of $race_n: ${wrong[$m]} wrong PID, ${eexist[$m]} EEXIST, ${clean[$m]} clean$extra; ${wrong[$m]} wrong of ${forks[$m]} forks"
        done
    done
}

# The fork supervisor's cost per fork: fork_floor exit N as the payload of a one-process tree,
# unsupervised and supervised (a payload-spawned child in the tree), and on the host directly.
row_fork_supervisor() {
    local r=5 rep t out per host=() plain=() sup=()
    ((quick)) && r=3
    for rep in $(seq "$r"); do
        say "fork supervisor, repetition $rep of $r: host, plain tree, supervised tree ($supervisor_forks forks each)"
        floor_once exit "$supervisor_forks"
        if [[ -n "$F_PER" ]]; then host+=("$F_PER"); emit payload_forks host "$supervisor_forks" "$rep" per_fork_us "$F_PER" us; fi
        for t in plain supervised; do
            if ! out=$(cd "$work" && timeout --signal=KILL "$timeout_s" "${prefix[@]}" "$work/rootless-restore" run --quiet \
                       "$work/forks-$t.json" 2>&1); then
                notes+=("forks-$t rep $rep failed: $(echo "$out" | tr '\n' ' ' | cut -c1-200)")
                continue
            fi
            per=$(awk '$1 == "exit" {print $3}' <<<"$out" | tail -1)
            if [[ -z "$per" ]]; then notes+=("forks-$t rep $rep: no figure in the payload's output: $out"); continue; fi
            emit payload_forks "$t" "$supervisor_forks" "$rep" per_fork_us "$per" us
            if [[ $t == plain ]]; then plain+=("$per"); else sup+=("$per"); fi
        done
    done
    # One more supervised run with --pin-log, to check what the supervisor did (not timed).
    local log="$work/pin.log" check
    rm -f "$log"
    ( cd "$work" && timeout --signal=KILL "$timeout_s" "${prefix[@]}" "$work/rootless-restore" run --quiet \
        --pin-log "$log" "$work/forks-supervised.json" ) >/dev/null 2>&1 || true
    check=$(python3 -c '
import json, sys
try:
    lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
except OSError:
    print("UNEXPECTED: no pin log"); sys.exit()
forks = [l for l in lines if l.get("kind") == "fork"]
pinned = [l for l in forks if l.get("pinned") and l.get("got") == 5000]
# Each child is reaped before it shows what it became, so PID 5000 is given back each time:
# every fork is pinned (until 2026-12-01 this check expected only the first).
ok = len(forks) == int(sys.argv[2]) and len(pinned) == len(forks)
print(("checked" if ok else "UNEXPECTED") + f" with --pin-log: {len(forks)} forks, {len(pinned)} pinned to 5000")
' "$log" "$supervisor_forks")
    [[ $(leftovers) -eq 0 ]] || pkill -KILL -u "$bench_user" 2>/dev/null || true
    local h p s
    h=$(median "${host[@]}"); p=$(median "${plain[@]}"); s=$(median "${sup[@]}")
    if [[ -n "$p" && -n "$s" ]]; then emit ratio payload_forks "$supervisor_forks" 0 supervised_over_plain "$(ratio_of "$s" "$p" | tr -d '×')" x; fi
    table_row "payload fork+exit+reap, unsupervised (µs/fork)" "${p:-?}" "${h:-?}" "$(ratio_of "$p" "$h")" \
        "floor column: fork_floor exit $supervisor_forks on the host, no runtime; medians of $r"
    table_row "payload fork+exit+reap, pinned (µs/fork)" "${s:-?}" "${p:-?}" "$(ratio_of "$s" "$p")" \
        "floor column: the same payload unsupervised; $check"
}

# --- the table ------------------------------------------------------------------------------
table=()
# Pads by characters, not bytes (labels contain µ and ×).
pad() { local s=$1 w=$2 side=$3 n; n=$(( w - ${#s} )); ((n < 0)) && n=0
    if [[ $side == left ]]; then printf '%s%*s' "$s" "$n" ""; else printf '%*s%s' "$n" "" "$s"; fi; }
table_row() { table+=("$(pad "$1" 50 left) $(pad "$2" 10 right) $(pad "$3" 10 right) $(pad "$4" 8 right)  $5"); }

# --- issue 13's targets: each case as figure + ratio to a floor measured in this run ------------
# A run of 2 001 processes exec'ing /bin/true vs fork+exec+reap; flat 10 000 holding until the
# report is written vs the kept-alive flat floor; chains vs the chain that execs before forking;
# a one-process run vs unshare -Urpf --mount-proc true; memory at 10 000.
wall_of_run() {   # TREE [options]: wall ms of a whole `run` (it must exit by itself)
    local tree=$1 t0 t1; shift
    t0=$(now)
    ( cd "$work" && exec "${prefix[@]}" "$work/rootless-restore" run --quiet "$@" "$tree" ) >/dev/null 2>"$work/wall.err" || true
    t1=$(now)
    elapsed_ms "$t0" "$t1"
}
until_report() {   # TREE: wall ms from start to the report file; leaves R_* from restore_once too
    local tree=$1 report="$work/ur-report.json" t0 t1 pid
    rm -f "$report"
    t0=$(now)
    ( cd "$work" && exec "${prefix[@]}" "$work/rootless-restore" run --quiet --report "$report" "$tree" ) >/dev/null 2>"$work/ur.err" &
    pid=$!
    local deadline=$(( $(date +%s) + timeout_s ))
    while [[ ! -s "$report" ]] && kill -0 "$pid" 2>/dev/null && (( $(date +%s) < deadline )); do sleep 0.01; done
    t1=$(now)
    U_MS=""; [[ -s "$report" ]] && U_MS=$(elapsed_ms "$t0" "$t1")
    U_HWM=$(field_kb "/proc/$pid/status" VmHWM)
    U_PT=$(( $(meminfo PageTables) - U_PT0 ))
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    [[ $(leftovers) -eq 0 ]] || pkill -KILL -u "$bench_user" 2>/dev/null || true
}
target_rows() {
    local r=3; ((quick)) && r=2
    local chains="250 500 1000 2000"; ((quick)) && chains="250 500 1000"
    python3 - "$work" "$chains" <<'PYEOF'
import json, sys
work, chains = sys.argv[1], sys.argv[2].split()
def write(name, procs):
    with open(f"{work}/{name}.json", "w") as f:
        json.dump({"version": 1, "processes": procs}, f)
true = {"args": ["/bin/true"], "env": ["PATH=/usr/bin:/bin"], "cwd": "/"}
write("t-true-2001", [{"pid": 100, "ppid": 0, "pgid": 100, "sid": 100, "process": true}]
      + [{"pid": 100 + i, "ppid": 100, "pgid": 100, "sid": 100, "process": true} for i in range(1, 2001)])
write("t-flat-10000", [{"pid": 100, "ppid": 0, "pgid": 100, "sid": 100}]
      + [{"pid": 100 + i, "ppid": 100, "pgid": 100, "sid": 100} for i in range(1, 10000)])
for n in map(int, chains):
    write(f"t-chain-{n}", [{"pid": 100 + i, "ppid": 99 + i if i else 0, "pgid": 100, "sid": 100} for i in range(n)])
write("t-one", [{"pid": 100, "ppid": 0, "pgid": 100, "sid": 100, "process": true}])
PYEOF
    chmod 0644 "$work"/t-*.json
    local ours=() floor=() i o f
    # 1. 2 001 processes exec'ing /bin/true, end to end (paired runs, medians).
    for i in $(seq "$r"); do
        say "targets: run of 2 001 /bin/true, pair $i of $r"
        floor_once exec-true 2001; floor+=("$F_TOTAL")
        ours+=("$(wall_of_run "$work/t-true-2001.json")")
    done
    o=$(median "${ours[@]}"); f=$(median "${floor[@]}")
    emit target true2001 2001 0 ours_ms "$o" ms; emit target true2001 2001 0 floor_ms "$f" ms
    table_row "run of 2 001 × /bin/true, end to end (ms)" "$o" "$f" "$(ratio_of "$o" "$f")" "target ≤ 1.2×; floor: fork+exec+reap of 2 001 in C; medians of $r"
    # 2. Flat 10 000 holding, until the report is written; memory.
    ours=(); floor=()
    local hwm="" pt="" fpt=""
    for i in $(seq 2); do
        say "targets: flat 10 000 until the report, pair $i of 2"
        local pt0; pt0=$(meminfo PageTables)
        floor_once flat 10000; floor+=("$F_TOTAL"); fpt=$F_PT
        U_PT0=$(meminfo PageTables)
        until_report "$work/t-flat-10000.json"
        [[ -n "$U_MS" ]] && ours+=("$U_MS"); hwm=$U_HWM; pt=$U_PT
    done
    o=$(median "${ours[@]}"); f=$(median "${floor[@]}")
    emit target flat10000 10000 0 ours_ms "$o" ms; emit target flat10000 10000 0 floor_ms "$f" ms
    table_row "flat 10 000 holding, to report written (ms)" "$o" "$f" "$(ratio_of "$o" "$f")" "target ≤ 1.3×; floor: fork_floor flat (kept alive, one byte each)"
    table_row "  memory at 10 000: runtime VmHWM (kB)" "$hwm" "" "" "peak RSS of the coordinator"
    table_row "  memory at 10 000: page tables (kB)" "$pt" "$fpt" "$(ratio_of "$pt" "$fpt")" "PageTables growth in /proc/meminfo while the tree exists"
    # 3. Chains.
    local n per=()
    for n in $chains; do
        say "targets: chain $n"
        floor_once deep-exec "$n"; f=$F_TOTAL
        U_PT0=$(meminfo PageTables)
        until_report "$work/t-chain-$n.json"; o=$U_MS
        emit target chain "$n" 0 ours_ms "$o" ms; emit target chain "$n" 0 floor_ms "$f" ms
        table_row "chain $n deep, to report written (ms)" "${o:-?}" "$f" "$(ratio_of "$o" "$f")" "target ≤ 1.5×, linear; $(awk -v a="$o" -v n="$n" 'BEGIN{ if (a != "") printf "%.1f ms/process", a/n}'); floor: each link execs before forking"
    done
    # 4. One process: a few milliseconds each, so 60 pairs, which of the two goes first
    # alternating; both started the same way (a subshell that execs the command).
    ours=(); floor=()
    local t0 t1
    for i in $(seq 60); do
        if ((i % 2)); then ours+=("$(wall_of_run "$work/t-one.json")"); fi
        t0=$(now); ( cd "$work" && exec "${prefix[@]}" unshare -Urpf --mount-proc true ) >/dev/null 2>&1 || true; t1=$(now)
        floor+=("$(elapsed_ms "$t0" "$t1")")
        if ((i % 2 == 0)); then ours+=("$(wall_of_run "$work/t-one.json")"); fi
    done
    o=$(median "${ours[@]}"); f=$(median "${floor[@]}")
    emit target one 1 0 ours_ms "$o" ms; emit target one 1 0 floor_ms "$f" ms
    local op fp; op=$(p10 "${ours[@]}"); fp=$(p10 "${floor[@]}")
    table_row "one-process run of /bin/true, wall (ms)" "$o" "$f" "$(ratio_of "$o" "$f")" "target ≤ 1.5×; floor: unshare -Urpf --mount-proc true; medians of 60 alternating pairs (p10: $op / $fp ms, $(ratio_of "$op" "$fp"))"
}

say "work directory $work; CSV $csv"
info=$(machine_info)
while IFS= read -r l; do say "$l"; done <<<"$info"
start_all=$(date +%s)
# /proc/loadavg every 2 s, to show how busy the machine was (the benchmark's own teardowns,
# when hundreds or thousands of processes die at once, raise it most).
( while :; do echo "$(date +%s) $(</proc/loadavg)"; sleep 2; done ) >"$work/loadavg.log" 2>/dev/null &
sampler=$!

table_row "row" "ours" "floor" "ratio" "notes"
table_row "----" "----" "-----" "-----" "-----"
if ((targets_only)); then
    target_rows
    kill "$sampler" 2>/dev/null || true; sampler=""
    {
        echo "rootless-restore, issue 13 targets, $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "$info"
        echo
        printf '%s\n' "${table[@]}"
        if ((${#notes[@]})); then echo; printf 'note: %s\n' "${notes[@]}"; fi
        echo "CSV: $csv"
    } | tee "bench-out/targets-$stamp.txt"
    exit 0
fi

# CPU used outside the benchmark, per section: all busy CPU time (/proc/stat) minus what the
# benchmark's own processes used (the shell's `times`: itself and every reaped descendant; the
# restored processes are reaped inside the namespace and roll up to the runtime). What is left
# is other users' work plus kernel threads (kdamond, kworkers), some of them working for us.
clk_tck=$(getconf CLK_TCK 2>/dev/null || echo 100)
cpu_last=""; cpu_summary=()
cpu_mark() {
    local busy mine wall tot me el share
    busy=$(awk -v hz="$clk_tck" '/^cpu / {printf "%.2f", ($2+$3+$4+$7+$8+$9)/hz}' /proc/stat)
    times >"$work/times"   # in this shell: a subshell's times would start at zero
    mine=$(awk '{for (i = 1; i <= 2; i++) {split($i, a, "m"); s += a[1]*60 + a[2]}} END {printf "%.2f", s}' "$work/times")
    wall=$EPOCHREALTIME
    if [[ -n "$cpu_last" ]]; then
        local line
        line=$(awk -v b="$busy" -v m="$mine" -v w="$wall" -v last="$cpu_last" 'BEGIN{split(last, l, " ");
            tot = b - l[1]; me = m - l[2]; el = w - l[3]; o = tot - me; if (o < 0) o = 0;
            printf "%.1f %.1f %.1f %.2f", tot, me, el, o / el}')
        read -r tot me el share <<<"$line"
        emit cpu "$1" 0 0 busy_cpu_s "$tot" s
        emit cpu "$1" 0 0 bench_cpu_s "$me" s
        emit cpu "$1" 0 0 wall_s "$el" s
        emit cpu "$1" 0 0 other_cpus "$share" cpus
        cpu_summary+=("$1 $share")
    fi
    cpu_last="$busy $mine $wall"
}
cpu_mark start

# A warm-up, not recorded: the first forks of a run were twice as slow as the rest (348 against
# 171 µs per fork+exit+reap in one run), which the first row would otherwise show.
floor_once exit 1000

# 1. fork + _exit + reap (the bare floor), per size.
for n in $(echo "$flat_sizes $deep_sizes" | tr ' ' '\n' | sort -nu); do
    floor_once exit "$n"
    [[ -n "$F_PER" ]] && emit floor_exit - "$n" 1 per_process_us "$F_PER" us
    table_row "fork+exit+reap, N=$n (µs/process)" "" "${F_PER:-?}" "" "plain fork, no namespace"
done

cpu_mark "fork+exit floors"

# 2. restores of flat and deep trees against fork-and-keep trees of the same shape.
for shape in flat deep; do
    sizes=$flat_sizes; [[ $shape == deep ]] && sizes=$deep_sizes
    for n in $sizes; do
        r=$reps; ((n >= 10000)) && r=1; [[ $shape == deep ]] && ((n >= 1000)) && r=1
        ours=(); floors=(); execs=(); syncs=(); totals=(); verifies=(); note=""
        for rep in $(seq "$r"); do
            say "$shape $n, repetition $rep of $r: fork floor"
            floor_once "$shape" "$n"
            if [[ -n "$F_PER" ]]; then
                floors+=("$F_PER")
                emit floor_keep "$shape" "$n" "$rep" per_process_us "$F_PER" us
                emit floor_keep "$shape" "$n" "$rep" create_ms "$F_TOTAL" ms
                emit floor_keep "$shape" "$n" "$rep" teardown_ms "$F_TEARDOWN" ms
                emit floor_keep "$shape" "$n" "$rep" memavail_drop_kb "$F_AVAIL" kB
                emit floor_keep "$shape" "$n" "$rep" kernelstack_kb "$F_STACK" kB
                emit floor_keep "$shape" "$n" "$rep" pagetables_kb "$F_PT" kB
                emit floor_keep "$shape" "$n" "$rep" private_dirty_kb "$F_DIRTY" kB
                fl_avail=$F_AVAIL; fl_stack=$F_STACK; fl_pt=$F_PT; fl_dirty=$F_DIRTY
            fi
            if [[ $shape == flat ]]; then
                say "$shape $n, repetition $rep of $r: fork floor in lockstep"
                floor_once flat-sync "$n"
                if [[ -n "$F_PER" ]]; then
                    syncs+=("$F_PER")
                    emit floor_sync flat "$n" "$rep" per_process_us "$F_PER" us
                fi
            fi
            if [[ $shape == deep ]]; then
                say "$shape $n, repetition $rep of $r: fork floor, chain with an exec in each process"
                floor_once deep-exec "$n"
                if [[ -n "$F_PER" ]]; then
                    execs+=("$F_PER")
                    emit floor_exec deep "$n" "$rep" per_process_us "$F_PER" us
                    emit floor_exec deep "$n" "$rep" teardown_ms "$F_TEARDOWN" ms
                    emit floor_exec deep "$n" "$rep" memavail_drop_kb "$F_AVAIL" kB
                fi
            fi
            say "$shape $n, repetition $rep of $r: rootless-restore run"
            restore_once "$shape" "$n" "$rep"
            if [[ -z "$R_BUILD" ]]; then
                note="restore failed: $R_PARTIAL"
                continue
            fi
            ours+=("$R_PER"); totals+=("$R_TOTAL"); verifies+=("$R_VERIFY")
            if [[ -n "$R_PARTIAL" ]]; then note="$R_PARTIAL"; emit restore "$shape" "$n" "$rep" partial 1 flag; fi
            emit restore "$shape" "$n" "$rep" per_process_us "$R_PER" us
            emit restore "$shape" "$n" "$rep" build_ms "$R_BUILD" ms
            emit restore "$shape" "$n" "$rep" verify_ms "$R_VERIFY" ms
            emit restore "$shape" "$n" "$rep" namespace_ms "$R_NS" ms
            emit restore "$shape" "$n" "$rep" release_ms "$R_RELEASE" ms
            emit restore "$shape" "$n" "$rep" report_ms "$R_REPORT" ms
            emit restore "$shape" "$n" "$rep" restore_ms "$R_TOTAL" ms
            emit restore "$shape" "$n" "$rep" teardown_ms "$R_TEARDOWN" ms
            emit restore "$shape" "$n" "$rep" exit_status "$R_STATUS" code
            emit restore "$shape" "$n" "$rep" leftovers "$R_LEFT" processes
            emit restore "$shape" "$n" "$rep" runtime_vmhwm_kb "$R_HWM" kB
            emit restore "$shape" "$n" "$rep" init_vmhwm_kb "$R_INIT_HWM" kB
            emit restore "$shape" "$n" "$rep" puppet_private_dirty_kb "$R_DIRTY" kB
            emit restore "$shape" "$n" "$rep" memavail_drop_kb "$R_AVAIL" kB
            emit restore "$shape" "$n" "$rep" kernelstack_kb "$R_STACK" kB
            emit restore "$shape" "$n" "$rep" pagetables_kb "$R_PT" kB
            last_hwm=$R_HWM; last_init=$R_INIT_HWM; last_dirty=$R_DIRTY; last_dirty_n=$R_DIRTY_SAMPLE
            last_avail=$R_AVAIL; last_stack=$R_STACK; last_pt=$R_PT; last_teardown=$R_TEARDOWN; last_status=$R_STATUS
        done
        o=$(median "${ours[@]}"); f=$(median "${floors[@]}")
        ratio=""; [[ -n "$o" && -n "$f" ]] && ratio=$(awk -v a="$o" -v b="$f" 'BEGIN{printf "%.2f×", a/b}')
        [[ -n "$ratio" ]] && emit ratio "$shape" "$n" 0 ours_over_floor "${ratio%×}" x
        extra=""
        if ((${#totals[@]})) && [[ -z "$R_PARTIAL" ]]; then
            extra="restore (build+verify+namespace) $(median "${totals[@]}") ms, verify $(median "${verifies[@]}") ms, SIGTERM teardown ${last_teardown} ms (exit $last_status)"
        fi
        table_row "$shape tree, N=$n (build µs/process)" "${o:-?}" "${f:-?}" "$ratio" "${note:-$extra}"
        if ((${#syncs[@]})); then
            e=$(median "${syncs[@]}")
            table_row "  floor: flat tree in lockstep" "" "$e" "$(awk -v a="$o" -v b="$e" 'BEGIN{ if (a == "" || b == 0) print ""; else printf "%.2f×", a/b}')" "each fork waits until the previous child has said it runs (run batches siblings instead)"
        fi
        if ((${#execs[@]})); then
            e=$(median "${execs[@]}")
            table_row "  floor: chain, exec in each process" "" "$e" "$(awk -v a="$o" -v b="$e" 'BEGIN{ if (a == "" || b == 0) print ""; else printf "%.2f×", a/b}')" "fresh address space per link: no anon_vma chain"
        fi
        if [[ $shape == flat && $n == "$(echo "$flat_sizes" | tr ' ' '\n' | sort -n | tail -1)" && -n "${last_hwm:-}" ]]; then
            mem_n=$n
            mem_hwm=$last_hwm; mem_init=$last_init; mem_dirty=$last_dirty; mem_dirty_n=$last_dirty_n
            mem_avail=$last_avail; mem_stack=$last_stack; mem_pt=$last_pt
            mem_fl_avail=${fl_avail:-}; mem_fl_stack=${fl_stack:-}; mem_fl_pt=${fl_pt:-}; mem_fl_dirty=${fl_dirty:-}
        fi
    done
    cpu_mark "$shape trees"
done

# Deep chains of 10 000 are not in the default run: see docs/performance.md ("deep chains").
if ! echo " $deep_sizes " | grep -q " 10000 "; then
    table_row "deep tree, N=10000" "" "" "" "skipped: its floor (a C chain forking without exec) is quadratic in the kernel (anon_vma chains); restores are linear since puppets share one address space; --deep-sizes to try"
fi

# 3. Peak memory at the largest flat tree.
if [[ -n "${mem_n:-}" ]]; then
    per=$(awk -v a="$mem_avail" -v n="$mem_n" 'BEGIN{printf "%.1f", a/n}')
    fper=$(awk -v a="$mem_fl_avail" -v n="$mem_n" 'BEGIN{ if (a == "") print "?"; else printf "%.1f", a/n}')
    table_row "memory, flat N=$mem_n: runtime VmHWM (kB)" "$mem_hwm" "" "" "the coordinator; its init: $mem_init kB"
    table_row "  puppet Private_Dirty (kB/process)" "$mem_dirty" "$mem_fl_dirty" "" "mean of $mem_dirty_n sampled processes; sum ≈ $(awk -v a="$mem_dirty" -v n="$mem_n" 'BEGIN{printf "%.0f", a*n/1024}') MiB"
    table_row "  MemAvailable drop (kB/process)" "$per" "$fper" "" "system-wide, so noisy; kernel stacks $(awk -v a="$mem_stack" -v n="$mem_n" 'BEGIN{printf "%.1f", a/n}') vs $(awk -v a="$mem_fl_stack" -v n="$mem_n" 'BEGIN{ if (a == "") print "?"; else printf "%.1f", a/n}') kB, page tables $(awk -v a="$mem_pt" -v n="$mem_n" 'BEGIN{printf "%.1f", a/n}') vs $(awk -v a="$mem_fl_pt" -v n="$mem_n" 'BEGIN{ if (a == "") print "?"; else printf "%.1f", a/n}') kB"
fi

# 4. One process, end to end: wall time of the whole command, median of 20, against unshare.
say "one-process tree, 20 times each, against unshare -Urpf --mount-proc true"
ours_w=(); uns_w=()
for i in $(seq 20); do
    t0=$(now); ( cd "$work" && "${prefix[@]}" "$work/rootless-restore" run --quiet "$work/one.json" ) >/dev/null 2>&1 || true; t1=$(now)
    ours_w+=("$(elapsed_ms "$t0" "$t1")")
    t0=$(now); ( cd "$work" && "${prefix[@]}" unshare -Urpf --mount-proc true ) >/dev/null 2>&1 || true; t1=$(now)
    uns_w+=("$(elapsed_ms "$t0" "$t1")")
done
for i in "${!ours_w[@]}"; do emit run_one - 1 $((i + 1)) wall_ms "${ours_w[$i]}" ms; emit unshare_one - 1 $((i + 1)) wall_ms "${uns_w[$i]}" ms; done
o=$(median "${ours_w[@]}"); u=$(median "${uns_w[@]}")
table_row "run of a 1-process tree, wall (ms)" "$o" "$u" "$(awk -v a="$o" -v b="$u" 'BEGIN{printf "%.2f×", a/b}')" "median of 20; floor column: unshare -Urpf --mount-proc true"
[[ $(leftovers) -eq 0 ]] || pkill -KILL -u "$bench_user" 2>/dev/null || true
cpu_mark "one process"

# 5. CRIU.
criu_row() {
    local reference="reference, NOT measured in this run: CRIU 4.2 restored 1 000 sleeping processes in about 2.9 s on these machines"
    if ! command -v criu >/dev/null 2>&1; then
        table_row "CRIU restore, 1 000 processes" "" "" "" "skipped: criu is not on PATH; $reference"
        return
    fi
    if [[ $(id -u) -ne 0 ]]; then
        table_row "CRIU restore, 1 000 processes" "" "" "" "skipped: criu needs root here; $reference"
        return
    fi
    local out
    if ! out=$(criu check 2>&1); then
        table_row "CRIU restore, 1 000 processes" "" "" "" "skipped: \`criu check\` fails here ($(echo "$out" | grep -m1 -iE 'error|unexpected' | cut -c1-120)); Debian 12's criu 3.17 fails on kernels >= 6.13 with \"Unexpected rt vDSO area bounds\"; $reference"
        return
    fi
    # A flat tree of 1 000 sleeping processes, dumped and restored by CRIU (as root).
    local d="$work/criu" pid t0 t1
    mkdir -p "$d"
    setsid bash -c 'for i in $(seq 999); do sleep 100000 & done; exec sleep 100000' </dev/null >/dev/null 2>&1 &
    pid=$!
    sleep 2
    if ! criu dump -t "$pid" -D "$d" --shell-job >"$d/dump.log" 2>&1; then
        kill -KILL -- -"$pid" 2>/dev/null || true
        table_row "CRIU restore, 1 000 processes" "" "" "" "skipped: criu dump failed ($(tail -1 "$d/dump.log" | cut -c1-120)); $reference"
        return
    fi
    t0=$(now)
    if criu restore -D "$d" --shell-job -d >"$d/restore.log" 2>&1; then
        t1=$(now)
        local ms; ms=$(elapsed_ms "$t0" "$t1")
        emit criu_restore flat 1000 1 restore_ms "$ms" ms
        table_row "CRIU restore, 1 000 processes (ms)" "" "$ms" "" "criu $(criu --version | head -1 | awk '{print $2}') as root, measured in this run"
        pkill -KILL -f 'sleep 100000' 2>/dev/null || true
    else
        table_row "CRIU restore, 1 000 processes" "" "" "" "skipped: criu restore failed ($(tail -1 "$d/restore.log" | cut -c1-120)); $reference"
    fi
}
criu_row

# 6. How PIDs are chosen: clone3 against the dance, wrong PIDs under noise, the fork supervisor.
row_clone3_vs_dance
cpu_mark "clone3 vs dance"
row_wrong_pid_rate
cpu_mark "wrong PIDs"
row_fork_supervisor
cpu_mark "fork supervisor"

# 7. validate at scale: parse + validate + plan, linear in the tree (issue 14 item 9).
say "validate of flat trees, chains and the unusual shapes of scripts/bench/trees.py (many dead session leaders, subreapers, daemons, setsid at every level, moved group leaders, seccomp profiles, threads), 10^4, 10^5, 10^6 processes (scripts/bench/planning.sh)"
planning_sizes="10000 100000 1000000"
((quick)) && planning_sizes="10000 100000"
while read -r shape n wall rss fwall frss bytes cpu; do
    emit validate "$shape" "$n" 1 wall_s "$wall" s
    emit validate "$shape" "$n" 1 cpu_s "$cpu" s
    emit validate "$shape" "$n" 1 peak_rss_kb "$rss" kB
    emit python_json "$shape" "$n" 1 wall_s "$fwall" s
    table_row "validate, $shape N=$n: wall (s) / peak RSS (MB) [CPU $cpu s]" "$wall / $(awk -v k="$rss" 'BEGIN{printf "%.0f", k/1024}')" "$fwall / $(awk -v k="$frss" 'BEGIN{printf "%.0f", k/1024}')" \
        "$(ratio_of "$wall" "$fwall")" "floor: python3 json.load of the same $(awk -v b="$bytes" 'BEGIN{printf "%.1f", b/1048576}') MiB file"
done < <(scripts/bench/planning.sh "$binary" "$planning_sizes")
cpu_mark "validate at scale"

# --- the end --------------------------------------------------------------------------------
left=$(leftovers)
if ((left > 0)); then
    notes+=("$left processes of $bench_user were left at the end; killed with pkill -KILL -u $bench_user")
fi
[[ $(id -u) -eq 0 ]] && pkill -KILL -u "$bench_user" 2>/dev/null || true
total_s=$(( $(date +%s) - start_all ))
kill "$sampler" 2>/dev/null || true; sampler=""
load_peak=$(awk -v s="$start_all" '$2 > m {m = $2; t = $1 - s} END {printf "%s at %d s", m, t}' "$work/loadavg.log" 2>/dev/null || true)
while read -r t l1 _; do emit loadavg - 0 "$((t - start_all))" load1 "$l1" load; done <"$work/loadavg.log"

{
    echo "rootless-restore benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), $total_s s"
    echo "$info"
    echo "load average at the end $(cut -d' ' -f1-3 /proc/loadavg); 1-minute peak during the run ${load_peak:-?} (sampled every 2 s)"
    echo
    printf '%s\n' "${table[@]}"
    echo
    echo "CPUs busy outside the benchmark's processes (other work + kernel threads), by section:"
    for l in "${cpu_summary[@]}"; do echo "${l##* } (${l% *})"; done | paste -sd';' | sed 's/;/; /g; s/^/  /'
    if ((${#notes[@]})); then echo; printf 'note: %s\n' "${notes[@]}"; fi
    echo
    echo "ours: build phase of run --report / N; floor: scripts/bench/fork_floor.c (cc -O2), same user, same shape"
    echo "CSV: $csv"
} | tee "bench-out/bench-$stamp.txt"
cp "$csv" bench-out/latest.csv
cp "bench-out/bench-$stamp.txt" bench-out/latest.txt
