#!/usr/bin/env bash
# Record a running job, kill it, and bring it back with the same PIDs, without root.
#
#   1. start a small job-control shell: a pipeline in its own process group, a background
#      job, a child in a session of its own, a zombie (exit code 200) and a stopped job;
#   2. `rootless-restore record` it to job.json;
#   3. kill every process of it;
#   4. `rootless-restore run job.json`: the same PIDs, parents, groups, sessions and states
#      come back inside a new user + PID namespace;
#   5. list the tree before and after, `record` the restored tree and `diff` it with job.json.
#
# Run it as an ordinary user. Run as root, it drops to the throwaway user rrtest first
# (RR_TEST_USER overrides the name), as scripts/demo.sh does. RR_BINARY=PATH uses that binary
# instead of building one with scripts/setup.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
say() { printf '[record-demo] %s\n' "$*"; }

if [[ -n "${RR_BINARY:-}" ]]; then
    binary=$(realpath "$RR_BINARY")
else
    bash scripts/setup.sh >/dev/null
    command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:$PATH"
    binary="$(swift build -c release --show-bin-path)/rootless-restore"
fi

# The repository may live where the unprivileged user cannot read (/root is mode 700): work in
# a fresh directory of our own.
work=$(mktemp -d /tmp/rootless-restore-record.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp "$binary" "$work/rootless-restore"

# The job. Restored, bash runs this script again from the top (a restore rebuilds processes
# and runs their recorded command lines; it does not bring back memory): the marker file
# `recorded` tells it that its children exist already, so it only waits.
cp examples/record/job.sh "$work/job.sh"

# What the user runs.
cat > "$work/steps.sh" <<'STEPS'
set -euo pipefail
cd "$1"
say() { printf '[record-demo] %s\n' "$*"; }

# The PIDs of $1 and of everything below it, parents first.
tree_pids() {
    local -A kids=()
    local root=$1 f line pid fields
    for f in /proc/[0-9]*/stat; do
        read -r line 2>/dev/null < "$f" || continue
        pid=${line%% *}
        read -ra fields <<< "${line##*) }"   # state, ppid, ...
        kids[${fields[1]}]+="$pid "
    done
    local queue=("$root") i=0
    while ((i < ${#queue[@]})); do
        queue+=(${kids[${queue[$i]}]:-})
        i=$((i + 1))
    done
    echo "${queue[@]}"
}

# The NSpid fields of process $1: its PID in every namespace from ours down to its own.
nspids() {
    local key rest
    while read -r key rest; do [[ $key == NSpid: ]] && { echo "$rest"; return; }; done 2>/dev/null < "/proc/$1/status"
}

# A ps-like table of the tree below host PID $1, as the tree's own PID namespace sees it
# (the last field of NSpid, NSpgid and NSsid in /proc/PID/status; a parent outside that
# namespace shows as 0).
show() {
    local p key rest pid pgid sid state ppid mine theirs cmd
    printf '%6s %6s %6s %6s  %-2s %s\n' PID PPID PGID SID S COMMAND
    for p in $(tree_pids "$1"); do
        ppid=0
        while read -r key rest; do
            read -ra f <<< "$rest"
            case $key in
                NSpid:) pid=${f[-1]} ;;
                NSpgid:) pgid=${f[-1]} ;;
                NSsid:) sid=${f[-1]} ;;
                State:) state=${f[0]} ;;
                PPid:) ppid=${f[0]} ;;
            esac
        done 2>/dev/null < "/proc/$p/status" || continue
        read -ra mine <<< "$(nspids "$p")"
        read -ra theirs <<< "$(nspids "$ppid" 2>/dev/null)"
        ppid=0
        ((${#theirs[@]} == ${#mine[@]})) && ppid=${theirs[-1]}
        cmd=$(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null || true)
        cmd=${cmd% }
        [[ -n $cmd ]] || cmd="[$(cat "/proc/$p/comm")] <defunct>"
        printf '%6s %6s %6s %6s  %-2s %s\n' "$pid" "$ppid" "$pgid" "$sid" "$state" "$cmd"
    done
}

restore=''
job=''
cleanup() {
    [[ -n $job ]] && kill -KILL $(tree_pids "$job") 2>/dev/null || true
    [[ -n $restore ]] && kill -TERM "$restore" 2>/dev/null && wait "$restore" 2>/dev/null || true
}
trap cleanup EXIT

say "1. starting the job (setsid bash job.sh)"
setsid bash ./job.sh "$PWD" < /dev/null > job.log 2>&1 &
job=$!
until [[ -e ready ]]; do sleep 0.05; done
sleep 0.2
show "$job" | tee before.txt
echo

say "2. \$ rootless-restore record $job -o job.json"
./rootless-restore record -q "$job" -o job.json
ls -l job.json
echo "(mode 0600: the file holds every process's environment; --no-env leaves them out)"
grep -o '"pid": [0-9]*, "ppid": [0-9]*, "pgid": [0-9]*, "sid": [0-9]*[^{}]*' job.json | sed 's/, "process": $//; s/^/  /'
echo

say "3. killing every process of the job"
kill -KILL $(tree_pids "$job")
wait "$job" 2>/dev/null || true
job=''
sleep 0.2
touch recorded
echo

say "4. \$ rootless-restore run --report report.json job.json &"
./rootless-restore run --report report.json job.json &
restore=$!
until [[ -e report.json ]]; do
    kill -0 "$restore" 2>/dev/null || { say "the restore failed"; exit 1; }
    sleep 0.05
done
top=$(grep -o '"hostPid": [0-9]*' report.json | head -1 | grep -o '[0-9]*$')
say "restored; the tree as its namespace sees it (top process: host PID $top):"
show "$top" | tee after.txt
echo
say "before and after, line by line (diff before.txt after.txt):"
diff before.txt after.txt || true
echo "(the top process's parent was outside the tree: it now hangs under the namespace's PID 1;"
echo " the stopped job stopped itself just before its exec, so it shows the runtime's command line"
echo " until it is continued; a zombie never runs anything, so it keeps the runtime's name)"
echo

say "5. \$ rootless-restore record $top -o restored.json; rootless-restore diff --restored --env job.json restored.json"
./rootless-restore record -q "$top" -o restored.json
./rootless-restore diff --restored --env job.json restored.json
echo
say "and without --restored (the stopped job has not exec'd yet):"
./rootless-restore diff job.json restored.json || true
echo

say "ending the restored tree (SIGTERM to rootless-restore run)"
kill -TERM "$restore"
wait "$restore" || true
restore=''
STEPS

chmod 755 "$work" "$work/rootless-restore" "$work/job.sh"
chmod 644 "$work/steps.sh"

as=()
if [[ $(id -u) -eq 0 ]]; then
    user="${RR_TEST_USER:-rrtest}"
    if ! id "$user" >/dev/null 2>&1; then
        say "creating throwaway user $user to run the walkthrough without root"
        useradd --create-home --shell /bin/bash "$user"
    fi
    chown -R "$user:" "$work"
    as=(setpriv "--reuid=$(id -u "$user")" "--regid=$(id -g "$user")" --clear-groups
        --inh-caps=-all -- env -i PATH=/usr/bin:/bin HOME=/tmp)
    say "running as $user ($(id -u "$user")), not root"
else
    say "running as $(id -un) ($(id -u))"
fi
echo
"${as[@]}" bash "$work/steps.sh" "$work"
