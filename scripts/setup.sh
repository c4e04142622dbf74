#!/usr/bin/env bash
# Installs what building and testing rootless-restore need (Debian packages), then builds the
# release binary. Idempotent: installed packages are skipped, apt-get update runs at most once.
#
#   scripts/setup.sh              install missing packages, then the release build: one
#                                 fully static, position-independent executable (static-pie)
#   scripts/setup.sh --deps-only  install missing packages only
#   scripts/setup.sh --build-only --scratch-path DIR
#                                 only the release build, in DIR (scripts/bench.sh uses this)
set -euo pipefail

deps_only=0
build_only=0
scratch=.build
while (($#)); do
    case "$1" in
        --deps-only) deps_only=1; shift ;;
        --build-only) build_only=1; shift ;;
        --scratch-path)
            [[ $# -ge 2 ]] || { echo "setup.sh: --scratch-path needs a directory" >&2; exit 64; }
            scratch=$2; shift 2 ;;
        -h|--help)
            sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
            exit 0 ;;
        *) echo "setup.sh: unknown argument: $1 (try --help)" >&2; exit 64 ;;
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
((build_only)) && packages=()
for pkg in "${packages[@]}"; do
    if ! dpkg -s "$pkg" >/dev/null 2>&1; then
        missing+=("$pkg")
    fi
done

if ((build_only)); then
    say "--build-only: system packages not checked"
elif ((${#missing[@]} == 0)); then
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

# The release binary is one fully static executable: the Swift runtime and standard library,
# Foundation, libstdc++, libcap, libseccomp and glibc are all linked in, so it runs in any
# container or on any node as it is, and no dynamic loader runs at start. That loader (six
# libraries, about 1 900 symbol look-ups) was a third of a one-process `run`: the static link
# makes it 1.2x `unshare -Urpf --mount-proc true` instead of 1.5x (docs/performance.md).
# - static-pie, not -static alone: the binary keeps address-space randomisation;
# - lld: gold cannot link a static-pie;
# - --disable-local-rpath: glibc refuses to start a static-pie that carries a RUNPATH;
# - --wrap=dladdr: static glibc's dladdr does not know the executable, and the Swift runtime's
#   start-up then needs /proc/self/exe, aborting where /proc is missing before `main` can say so
#   (Sources/CRestoreShim/static_dladdr.c answers for the executable).
# glibc warns at the link that getpwuid in a static binary may load NSS modules (libnss_*.so) of
# the same glibc at run time; users listed in /etc/passwd need none.
release_build=(swift build -c release --static-swift-stdlib --disable-local-rpath --scratch-path "$scratch"
               -Xswiftc -static-executable
               -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld
               -Xswiftc -Xclang-linker -Xswiftc -static-pie
               -Xlinker --wrap=dladdr)
lld_dir=$(dirname "$(command -v swift)")
if [[ ! -x "$lld_dir/ld.lld" ]] && ! command -v ld.lld >/dev/null 2>&1; then
    echo "setup.sh: ld.lld is missing (the Swift toolchain ships it in $lld_dir); the static-pie link needs it" >&2
    exit 1
fi
say "${release_build[*]} --product rootless-restore (this takes a few minutes on 2 cores)"
"${release_build[@]}" --product rootless-restore
bin_dir=$("${release_build[@]}" --show-bin-path)
binary="$bin_dir/rootless-restore"
if [[ ! -x "$binary" ]]; then
    echo "setup.sh: the build finished but $binary is missing" >&2
    exit 1
fi
# No program interpreter (no dynamic loader, no shared library) and type DYN (position-independent).
if readelf -lW "$binary" | grep -q 'INTERP' || ! readelf -hW "$binary" | grep -q 'Type:.*DYN'; then
    echo "setup.sh: $binary is not a static-pie executable:" >&2
    readelf -hlW "$binary" | grep -E 'Type:|INTERP|interpreter' >&2 || true
    exit 1
fi
say "built: $binary (static-pie: no shared library, no dynamic loader)"
say "try:   $binary --help"
