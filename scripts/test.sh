#!/usr/bin/env bash
# Runs the whole test suite: installs missing Debian packages, creates the throwaway test user
# (when run as root), builds the debug binary and runs `swift test` against it. The end-to-end
# tests drop to that user, so they exercise the rootless path even though CI runs as root.
# Then the core restore suites again inside an outer namespace, with the ns_last_pid dance, and
# with the release binary (static-pie), and the fuzzer for 30 s.
#
#   scripts/test.sh                 everything
#   scripts/test.sh --filter X      only the tests matching X (passed to `swift test --filter`)
#
# Environment: RR_TEST_USER overrides the test user's name (default rrtest).
set -euo pipefail

swift_test_args=()
while (($#)); do
    case "$1" in
        --filter)
            (($# >= 2)) || { echo "test.sh: --filter needs a value" >&2; exit 64; }
            swift_test_args+=(--filter "$2"); shift 2 ;;
        --filter=*) swift_test_args+=(--filter "${1#--filter=}"); shift ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "test.sh: unknown argument: $1 (try --help)" >&2; exit 64 ;;
    esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# useradd and usermod live in /usr/sbin, which a non-login root shell may not have on PATH.
export PATH="$PATH:/usr/sbin:/sbin"

say() { printf '[test] %s\n' "$*"; }

# Full setup, release build included: the README's demo runs the release binary, and only an
# optimised build exercises the optimiser (Swift 6.3.1 once crashed there and nowhere else).
bash scripts/setup.sh
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:$PATH"

test_user="${RR_TEST_USER:-rrtest}"
is_root=0
[[ $(id -u) -eq 0 ]] && is_root=1

# Processes the test user still has, one per line (empty when none).
user_processes() { pgrep -u "$test_user" -a 2>/dev/null || true; }

# A namespace's PID 1 the kernel can never finish reaping (stuck in zap_pid_ns_processes, e.g.
# left by an older build) survives SIGKILL until a reboot. The end-to-end tests need a user with
# no process at all, so when the chosen user has such a leftover, use the next free name.
if ((is_root)) && [[ -z "${RR_TEST_USER:-}" ]]; then
    for candidate in rrtest rrtest2 rrtest3 rrtest4 rrtest5; do
        test_user=$candidate
        id "$test_user" >/dev/null 2>&1 || break
        [[ -z "$(user_processes)" ]] && break
        pkill -KILL -u "$test_user" || true
        for _ in $(seq 25); do [[ -z "$(user_processes)" ]] && break; sleep 0.2; done
        [[ -z "$(user_processes)" ]] && break
        say "user $test_user has processes SIGKILL cannot end (a reboot will):"
        ps -o pid,stat,wchan:24,args -u "$test_user" || true
    done
fi

if ((is_root)); then
    if ! id "$test_user" >/dev/null 2>&1; then
        say "creating throwaway test user $test_user"
        useradd --create-home --shell /bin/bash "$test_user"
    fi
    # newuidmap/newgidmap need ranges; the runtime may use them for multi-id maps.
    if ! grep -q "^$test_user:" /etc/subuid 2>/dev/null || ! grep -q "^$test_user:" /etc/subgid 2>/dev/null; then
        say "adding /etc/subuid and /etc/subgid ranges for $test_user"
        grep -q "^$test_user:" /etc/subuid 2>/dev/null || usermod --add-subuids 200000-265535 "$test_user"
        grep -q "^$test_user:" /etc/subgid 2>/dev/null || usermod --add-subgids 200000-265535 "$test_user"
    fi
    say "test user: $(id "$test_user")"
    leftovers=$(user_processes)
    if [[ -n "$leftovers" ]]; then
        say "killing processes of $test_user left over from an earlier run:"
        printf '%s\n' "$leftovers"
        pkill -KILL -u "$test_user" || true
    fi
else
    say "not root: the end-to-end tests run as $(id -un) directly"
fi

say "swift build --product rootless-restore (debug)"
swift build --product rootless-restore
binary="$(swift build --show-bin-path)/rootless-restore"
[[ -x "$binary" ]] || { echo "test.sh: $binary was not built" >&2; exit 1; }
say "binary: $binary"

# The simulated cluster of the multi-node tests (two nodes and a controller in network, UTS,
# mount and PID namespaces; munged, slurmctld, a slurmd and an sshd per node). Setting it up
# needs root; without it those tests skip and say why. In CI a failed set-up fails the run.
if ((is_root)); then
    say "scripts/testhosts.sh up --user $test_user (simulated nodes for the multi-node tests)"
    if bash scripts/testhosts.sh up --user "$test_user"; then
        trap 'say "scripts/testhosts.sh down --user $test_user"; bash scripts/testhosts.sh down --user "$test_user" || true' EXIT
    elif [[ "${CI:-}" == true ]]; then
        echo "test.sh: FAIL: scripts/testhosts.sh up failed; CI needs the simulated nodes" >&2
        exit 1
    else
        say "WARNING: the simulated nodes could not be set up: the multi-node tests will skip"
    fi
else
    say "not root: no simulated nodes; the multi-node tests will skip"
fi

status=0
say "swift test --no-parallel ${swift_test_args[*]}"
# --no-parallel: the end-to-end tests share one user and check it has nothing left (the
# harness also serializes them, but this keeps the whole run deterministic).
RR_BINARY="$binary" RR_TEST_USER="$test_user" swift test --no-parallel "${swift_test_args[@]}" || status=$?
if ((${#swift_test_args[@]} == 0)); then
    # The core restore cases again inside an outer user + PID namespace, as in a rootless
    # container (Podman, Apptainer): the runtime nests its namespaces one level deeper.
    say "swift test --filter RootlessRestoreTests, inside unshare --user --map-current-user --pid"
    RR_OUTER_NAMESPACE=1 RR_BINARY="$binary" RR_TEST_USER="$test_user" \
        swift test --skip-build --no-parallel --filter RootlessRestoreTests || status=$?
    # The restore cases again with the ns_last_pid dance (the fallback for kernels without
    # set_tid); nested trees are refused with it by design, so the single-level suites.
    say "swift test, restore suites with --pid-method dance"
    RR_PID_METHOD=dance RR_BINARY="$binary" RR_TEST_USER="$test_user" \
        swift test --skip-build --no-parallel --filter "RootlessRestoreTests|SessionTopologyTests|CRIUFixtureRestoreTests" || status=$?
    # The release binary, as setup.sh links it for users (static-pie, no dynamic loader, static
    # glibc's NSS for the id-map look-ups, its dladdr wrapper for a missing /proc), on the core
    # restore, identity and container-check suites; the passes above run the debug build, and
    # PodmanTests runs the release binary in a container.
    release_binary="$(swift build -c release --show-bin-path)/rootless-restore"
    say "swift test, restore, identity and container-check suites with the release binary ($release_binary)"
    RR_BINARY="$release_binary" RR_TEST_USER="$test_user" \
        swift test --skip-build --no-parallel --filter "RootlessRestoreTests|IdentityTests|ContainerCheckTests" || status=$?
    # The tree parser, validator and planner under libFuzzer, bounded: a crash fails the suite.
    say "scripts/fuzz.sh 30 (libFuzzer on the tree parser and validator, from Fuzz/corpus)"
    bash scripts/fuzz.sh 30 || status=$?
fi

if ((is_root)); then
    # An orphan that just died may still await the machine's init for a moment: allow 10 s.
    for _ in $(seq 50); do
        leftovers=$(user_processes)
        [[ -z "$leftovers" ]] && break
        sleep 0.2
    done
    if [[ -n "$leftovers" ]]; then
        echo "test.sh: FAIL: processes of $test_user remained after the tests:" >&2
        ps -o pid,ppid,pgid,sid,stat,user,args -u "$test_user" >&2 || printf '%s\n' "$leftovers" >&2
        pkill -KILL -u "$test_user" || true
        ((status != 0)) || status=1
    fi
fi

if ((status == 0)); then
    say "all tests passed"
else
    say "FAILED (status $status)"
fi
exit "$status"
