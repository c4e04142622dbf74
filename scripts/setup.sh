#!/usr/bin/env bash
# Installs what building and testing rootless-restore need (Debian packages), then builds the
# release binary. Idempotent: installed packages are skipped, apt-get update runs at most once.
#
#   scripts/setup.sh              install missing packages, then the static release build
#                                 (`swift build -c release --static-swift-stdlib`)
#   scripts/setup.sh --deps-only  install missing packages only
set -euo pipefail

deps_only=0
for arg in "$@"; do
    case "$arg" in
        --deps-only) deps_only=1 ;;
        -h|--help)
            sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
            exit 0 ;;
        *) echo "setup.sh: unknown argument: $arg (try --help)" >&2; exit 64 ;;
    esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."


say() { printf '[setup] %s\n' "$*"; }

# Debian packages: C libraries the package links (libcap, libseccomp, found by pkg-config),
# newuidmap/newgidmap (uidmap), pgrep/pkill (procps), setpriv/unshare (util-linux), and
# python3-jsonschema for checking trees against the JSON schema; Open MPI (mpicc, mpirun) for
# examples/mpi and its end-to-end test; for the simulated nodes of the multi-node tests
# (scripts/testhosts.sh, examples/multinode): MPICH, Slurm, munge, ssh, iproute2, tini, bc;
# for the container tests: podman, runc, busybox-static; for record's real-program tests:
# nginx-light, postgresql (15 on Debian 12: initdb, pg_ctl, psql), tini, script (bsdutils);
# tmux for the terminal tests (a tmux server with 3 windows, recorded and restored);
# GNU time for scripts/bench.sh; gcc and make for the random real trees (realtree.c) and the
# make -j4 pin-check tests; binutils (as, ld) for the i386/x32 payloads of the multi-arch pinning test.
packages=(pkg-config libcap-dev libseccomp-dev uidmap procps util-linux python3 python3-jsonschema time gcc make binutils
          openmpi-bin libopenmpi-dev
          mpich libmpich-dev slurm-wlm munge openssh-server openssh-client iproute2 tini bc
          podman runc busybox-static
          nginx-light postgresql bsdutils tmux)

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg -s "$pkg" >/dev/null 2>&1; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} == 0)); then
    say "system packages: all present (${packages[*]})"
else
    say "system packages missing: ${missing[*]}"
    if [[ $(id -u) -eq 0 ]]; then
        as_root=()
    elif command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
        say "not root: using sudo to install them"
    else
        echo "setup.sh: these Debian packages are missing and this user cannot install them:" >&2
        echo "    ${missing[*]}" >&2
        echo "Install them as root, then run this script again:" >&2
        echo "    apt-get update && apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    say "apt-get update"
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    say "apt-get install ${missing[*]}"
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    for pkg in "${missing[@]}"; do
        if ! dpkg -s "$pkg" >/dev/null 2>&1; then
            echo "setup.sh: $pkg is still not installed after apt-get install" >&2
            exit 1
        fi
    done
    say "system packages installed"
fi

if ! command -v swift >/dev/null 2>&1; then
    if [[ -x /opt/swift/usr/bin/swift ]]; then
        export PATH="/opt/swift/usr/bin:$PATH"
    else
        echo "setup.sh: the Swift toolchain (swift 6.x) is not on PATH." >&2
        echo "Install it from swift.org (Debian 12 / x86_64) and put its usr/bin on PATH." >&2
        exit 1
    fi
fi
say "swift: $(swift --version 2>&1 | head -n1)"

if ((deps_only)); then
    say "--deps-only: not building"
    exit 0
fi

# --static-swift-stdlib links the Swift runtime and standard library (Foundation too) into the
# binary: one file that runs in any container or on any node without the Swift runtime
# installed (only glibc, libcap and libseccomp, which every Debian-like image has or can get).
say "swift build -c release --static-swift-stdlib --product rootless-restore (this takes a few minutes on 2 cores)"
swift build -c release --static-swift-stdlib --product rootless-restore
bin_dir=$(swift build -c release --static-swift-stdlib --show-bin-path)
binary="$bin_dir/rootless-restore"
if [[ ! -x "$binary" ]]; then
    echo "setup.sh: the build finished but $binary is missing" >&2
    exit 1
fi
if ldd "$binary" 2>/dev/null | grep -q 'libswift\|libFoundation\|libdispatch'; then
    echo "setup.sh: $binary still links Swift runtime libraries:" >&2
    ldd "$binary" >&2
    exit 1
fi
say "built: $binary (Swift standard library linked in statically: ldd lists no libswift*.so)"
say "try:   $binary --help"
